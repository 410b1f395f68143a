// One HTTP/1.1 connection (detail/connection.hpp). While idle it holds only its socket and a few
// fields: no buffer, no parser, no pending operation. Reads go into
// the server's loop-owned buffer; a request that spans I/O events moves into a
// heap `flight` that lives only as long as that request.
#include "detail/clock.hpp"
#include "detail/exchange.hpp"
#include "detail/framing.hpp"
#include "detail/server_impl.hpp"
#include "detail/sys.hpp"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/string.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cassert>
#include <charconv>
#include <cstring>
#include <exception>
#include <system_error>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

namespace fapws::detail {

using namespace std::literals;

namespace {

// st_waiting: the request went to an asynchronous handler; nothing more is
// read until it answers.
enum : std::uint8_t { st_reading = 0, st_writing = 1, st_lingering = 2, st_closed = 3, st_waiting = 4 };
static_assert(st_closed == connection::st_closed_v);

// Bodies up to this size are copied into the output buffer so head and body
// leave in one send(2); larger ones are written from where they are.
constexpr std::size_t inline_body = 16 * 1024;
// Bytes one connection may write per turn of the loop before yielding, so a
// large response never stalls the others.
constexpr std::size_t write_quantum = 256 * 1024;
// sendfile copies nothing through user space: a larger turn costs the loop
// little and saves wake-ups (nginx's sendfile_max_chunk is 2 MiB too).
constexpr std::size_t sendfile_quantum = 2 * 1024 * 1024;
constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";

// v in decimal, in buf (which must hold 20 digits). Inlined: std::to_chars
// as a call cost a response about 40 instructions (callgrind).
template <std::size_t N>
[[gnu::always_inline]] inline std::string_view format_uint(char (&buf)[N], std::uint64_t v) noexcept
{
    auto r = std::to_chars(buf, buf + N, v);
    return {buf, static_cast<std::size_t>(r.ptr - buf)};
}

// A response head gathered as parts and copied into the output with one
// resize: the parts are views into the response, the config and literals,
// alive until write().
class head_writer {
public:
    void add(std::string_view s) noexcept
    {
        if (s.empty())
            return;  // an empty view may have no data(): never memcpy from it
        assert(n_ < parts_.size());
        parts_[n_++] = s;
        len_ += s.size();
    }
    void write(std::string& out) const
    {
        const std::size_t at = out.size();
        out.resize(at + len_);
        char* p = out.data() + at;
        for (std::size_t i = 0; i < n_; ++i) {
            std::memcpy(p, parts_[i].data(), parts_[i].size());
            p += parts_[i].size();
        }
    }

private:
    std::array<std::string_view, 16> parts_;
    std::size_t n_ = 0;
    std::size_t len_ = 0;
};

// What every head starts with: the status line, then Server and Date
// unless the response brought its own (empty `server`, date false).
// Inlined: as a call it cost emit() about 70 instructions a response.
[[gnu::always_inline]] inline void open_head(head_writer& h, char (&digits)[3], int status, std::string_view reason, std::string_view server,
               bool date)
{
    // A status is three digits (response::status keeps it in 100..999).
    digits[0] = static_cast<char>('0' + status / 100 % 10);
    digits[1] = static_cast<char>('0' + status / 10 % 10);
    digits[2] = static_cast<char>('0' + status % 10);
    h.add("HTTP/1.1 "sv);
    h.add(std::string_view(digits, 3));
    h.add(" "sv);
    h.add(reason);
    h.add("\r\n"sv);
    if (!server.empty()) {
        h.add("Server: "sv);
        h.add(server);
        h.add("\r\n"sv);
    }
    if (date)
        h.add(date_line());
}

void append_hex(std::string& s, std::uint64_t v)
{
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v, 16);
    s.append(buf, r.ptr);
}

// One chunk of a chunked body (RFC 9112 section 7.1).
void append_chunk(std::string& out, std::string_view d)
{
    append_hex(out, d.size());
    out.append("\r\n");
    out.append(d);
    out.append("\r\n");
}

// The head ends at the first empty line; Beast accepts only CRLF there.
std::size_t head_length(const char* begin, const char* end) noexcept
{
    std::string_view all(begin, static_cast<std::size_t>(end - begin));
    auto pos = all.find("\r\n\r\n");
    return pos == std::string_view::npos ? all.size() : pos + 4;
}

enum class head_scan : unsigned char { partial, complete, bad };

// Looks for the end of a head in [p, p+n), resuming at `from` (bytes already
// scanned by an earlier call, so a head trickled in byte by byte costs O(n)
// in all). On complete, `from` becomes the head's length. A bare LF is
// refused: Beast ends a head only at CRLFCRLF, so a bare-LF head would wait
// for the timeout (RFC 9112 section 2.2 lets us refuse it).
head_scan scan_head(const char* p, std::size_t n, std::size_t& from) noexcept
{
    std::size_t i = from;
    while (i < n) {
        const void* lf = std::memchr(p + i, '\n', n - i);
        if (!lf)
            break;
        i = static_cast<std::size_t>(static_cast<const char*>(lf) - p);
        if (i == 0 || p[i - 1] != '\r')
            return head_scan::bad;
        if (i >= 3 && p[i - 2] == '\n') {
            from = i + 1;
            return head_scan::complete;
        }
        ++i;
    }
    from = n;
    return head_scan::partial;
}

// A request line ending in "HTTP/d.d" CRLF: then a refused version is 505;
// anything else Beast calls a bad version is just a bad request.
bool well_formed_version(const char* p, std::size_t n) noexcept
{
    std::string_view all(p, n);
    auto eol = all.find("\r\n");
    if (eol == std::string_view::npos || eol < 8)
        return false;
    std::string_view v = all.substr(eol - 8, 8);
    // method SP target SP version: a space inside the target is a bad request.
    if (std::count(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(eol), ' ') != 2)
        return false;
    return v.substr(0, 5) == "HTTP/" && std::isdigit(static_cast<unsigned char>(v[5])) && v[6] == '.' &&
           std::isdigit(static_cast<unsigned char>(v[7])) && all.substr(0, eol).find('\n') == std::string_view::npos;
}

}  // namespace

void internal_error(response& res)
{
    res.clear();
    res.status(500);
    res.header("Content-Type", "text/plain; charset=utf-8");
    res.body_ref("Internal Server Error\n");
}

struct flight {
    // Input not yet consumed: a partial request, or pipelined requests
    // waiting for the current response to finish.
    std::string in;
    // A request spanning events: its parser, head bytes and body.
    std::optional<request_parser> parser;
    std::size_t scanned = 0;     // bytes at the start of `in` already scanned
    std::int64_t body_since = 0;  // now_ms() when the body began to arrive
    bool partial_head = false;   // `in` holds the start of a head, waiting for its end
    request req;  // owns its head (request::own_head)
    request_body body;

    // Output not yet written, then the rest of the body.
    std::string out;
    std::size_t out_pos = 0;
    // pushed: the bytes come from a body_writer, framed into `out`.
    enum class body_kind : unsigned char { none, view, file, source, pushed } kind = body_kind::none;
    std::string owned;
    std::string_view view;
    int file_fd = -1;
    bool file_owned = true;
    off_t file_off = 0;
    std::unique_ptr<body_source> source;
    std::vector<std::shared_ptr<const void>> holds;
    std::uint64_t left = 0;  // body bytes still owed when the length is declared
    bool has_length = false;
    bool chunked = false;
    bool gather = false;  // the source's body_source::gathers()

    // A body_writer's parked handlers.
    body_writer::handler_type write_done;
    body_writer::handler_type finish_done;
    bool pushed_end = false;   // async_finish was called
    bool pump_posted = false;

    // route_options::stream_body: the body goes to the handler as it comes.
    std::shared_ptr<body_stream> stream;
    bool reader_full = false;  // reading stopped until the handler takes some

    void drop_body() noexcept
    {
        kind = body_kind::none;
        source.reset();
        holds.clear();
        owned.clear();
        view = {};
        if (file_fd >= 0 && file_owned)
            ::close(file_fd);
        file_fd = -1;
        file_owned = true;
    }
    ~flight() { drop_body(); }
};

// A reference held on the call stack.
class conn_ref {
public:
    explicit conn_ref(connection& c) noexcept : c_(&c) { c_->add_ref(); }
    ~conn_ref() { c_->release(); }
    conn_ref(const conn_ref&) = delete;
    conn_ref& operator=(const conn_ref&) = delete;

private:
    connection* c_;
};

namespace {
// wait_app: for the application (an answer, or a body_writer's bytes); only
// the peer leaving matters then.
enum : std::uint8_t { wait_none = 0, wait_in = 1, wait_out = 2, wait_on_app = 3 };
}

connection::connection(server::impl& srv, int fd, const listener_info& where,
                       std::uint32_t peer_v4, std::uint16_t peer_port)
    : srv_(srv), where_(&where), fd_(fd), peer_v4_(peer_v4), peer_port_(peer_port),
      proxy_pending_(where.proxy_protocol)
{
}

// An idle connection: this object in a 112-byte malloc chunk; the kernel
// keeps the epoll registration (issue #2's budget is 400 bytes of RSS).
static_assert(sizeof(connection) <= (own_reactor ? 104 : 112),
              "an idle connection must fit a 112-byte malloc chunk (128 in the portable build)");

connection::~connection()
{
    if (state_ != st_closed)
        ::close(fd_);  // never started
}

void connection::start()
{
    conn_ref hold(*this);
#if FAPWS_REACTOR_EPOLL
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = this;
    if (::epoll_ctl(srv_.epfd_, EPOLL_CTL_ADD, fd_, &ev) != 0) {
        log_error(std::string("cannot register a connection with epoll: ") + std::strerror(errno));
        ::close(fd_);
        state_ = st_closed;
        return;
    }
#else
    try {
        sock_ = std::make_unique<descriptor>(srv_.ioc_.get_executor(), fd_);
    } catch (const std::exception& e) {
        log_error(std::string("cannot register a connection with the reactor: ") + e.what());
        ::close(fd_);
        state_ = st_closed;
        return;
    }
    writable_ = true;  // a new socket takes bytes; epoll says so with a first edge
#endif
    add_ref();  // held by the registration; close() drops it
    srv_.opened(*this);
    schedule(wait_list::header);
    wait_read();
}

void connection::on_event(std::uint32_t ev)
{
    if (state_ == st_closed)
        return;
    if (ev & (ev_in | ev_hup))
        readable_ = true;
    if (ev & ev_hup)
        eof_ = true;
    if (ev & (ev_out | ev_hup))
        writable_ = true;
    if (wait_ == wait_in && readable_) {
        wait_ = wait_none;
        readable();
    } else if (wait_ == wait_out && writable_) {
        wait_ = wait_none;
        pump();
    } else if (wait_ == wait_on_app && eof_) {
        // The client left while the application works for it: cancel it.
        wait_ = wait_none;
        close();
    }
}

#if FAPWS_REACTOR_EPOLL
// The registration is permanent: nothing to arm.
inline void connection::watch(bool) {}
#else
// One Asio wait for what the connection waits on, unless one is pending.
void connection::watch(bool write)
{
    const std::uint8_t bit = write ? 2 : 1;
    if ((armed_ & bit) || state_ == st_closed)
        return;
    armed_ |= bit;
    add_ref();  // the pending wait's; a wait cancelled by close() drops it too
    sock_->async_wait(write ? descriptor::wait_write : descriptor::wait_read, [this, bit](error_code ec) {
        conn_ref hold(*this);
        release();
        armed_ &= static_cast<std::uint8_t>(~bit);
        if (ec || state_ == st_closed)
            return;
        // The loop said it was idle before blocking in the io_context; this
        // handler is a turn of its own (config::busy_release).
        if (srv_.busy_.on())
            srv_.busy_.turn(now_ms());
        std::uint32_t ev = bit == 2 ? ev_out : ev_in;
        if (bit == 1 && wait_ == wait_on_app) {
            // Watching for the peer leaving: readable is EOF or an error
            // unless a byte is there to read.
            char c;
            ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                ev |= ev_hup;
            else if (n < 0)
                return watch(false);  // nothing after all
        }
        on_event(ev);
    });
}
#endif

// Waits cost no system call: the registration is permanent. What arrived
// while the connection was busy is in readable_, so it reads at once (after
// the other connections had their turn).
void connection::wait_read()
{
    if (readable_)
        return post<&connection::readable>();
    wait_ = wait_in;
    watch(false);
}

// Called right after send() said EAGAIN: an EPOLLOUT edge will follow.
void connection::wait_write()
{
    schedule(wait_list::io);
    writable_ = false;
    wait_ = wait_out;
    watch(true);
}

void connection::readable()
{
    if (state_ == st_lingering)
        return linger();
    if (released_.load(std::memory_order_relaxed) && idle())
        return close();  // busy_watch sent a FIN: what came since is not ours to answer
    do_read();
}

void connection::schedule(wait_list l)
{
    // The header timeout counts from the first byte of the head: do not
    // extend it while the head trickles in.
    if (l == list_ && l == wait_list::header)
        return;
    srv_.untrack(*this);
    srv_.track(*this, l);
}

flight& connection::fl()
{
    if (!fl_) {
        fl_ = std::make_unique<flight>();
        if (!srv_.spare_.empty()) {
            fl_->out = std::move(srv_.spare_.back());
            srv_.spare_.pop_back();
        }
    }
    return *fl_;
}

void connection::drop_flight() noexcept
{
    if (!fl_)
        return;
    auto& spare = srv_.spare_;
    if (spare.size() < server::impl::max_spare && fl_->out.capacity() >= 4096 &&
        fl_->out.capacity() <= 4 * srv_.cfg_.block_size) {
        fl_->out.clear();
        spare.push_back(std::move(fl_->out));
    }
    fl_.reset();
}

request_parser& connection::parser()
{
    if (fl_ && fl_->parser)
        return *fl_->parser;
    if (!srv_.parser_) {
        srv_.req_.fields_.clear();
        srv_.body_.reset();
        srv_.parser_.emplace(srv_.req_, body_sink{&connection::append, this}, srv_.cfg_.header_line_limit);
        srv_.parser_->eager(true);
        srv_.parser_->header_limit(static_cast<std::uint32_t>(
            std::min<std::size_t>(srv_.cfg_.header_limit, UINT32_MAX)));
        srv_.parser_->body_limit(srv_.cfg_.body_limit);
    }
    return *srv_.parser_;
}

void connection::reset_parser()
{
    if (fl_ && fl_->parser) {
        fl_->parser.reset();
        fl_->req = request();
        fl_->body.reset();
    } else {
        srv_.parser_.reset();
    }
}

bool connection::idle() const noexcept
{
    return state_ == st_reading && !(fl_ && (fl_->parser || !fl_->in.empty()));
}

void connection::do_read()
{
    char* buf = srv_.rbuf_.get();
    ssize_t n = ::recv(fd_, buf, srv_.rbuf_size_, 0);
    if (n < 0) {
        if (errno == EINTR)
            return wait_read();
        if (errno == EAGAIN) {
            readable_ = false;
            return wait_read();
        }
        ++srv_.stats_.io_errors;
        return close();
    }
    if (n == 0)
        return close();  // the peer closed; a partial request dies with it
    // Off the keep-alive list while this request is handled: the next
    // proceed() puts it on the list its state calls for (and busy_watch's
    // thread never takes a connection in use for an idle one).
    if (list_ == wait_list::keepalive)
        srv_.untrack(*this);
    // Less than asked: the socket is drained, and the next byte raises an
    // edge. Unless the peer half-closed: then the next recv says EOF.
    if (static_cast<std::size_t>(n) < srv_.rbuf_size_ && !eof_)
        readable_ = false;
    conn_ref hold(*this);
    if (fl_ && !fl_->in.empty()) {
        // Only the new bytes are copied; the parse resumes in place.
        fl_->in.append(buf, static_cast<std::size_t>(n));
        return consume_stashed();
    }
    std::size_t used = consume(buf, static_cast<std::size_t>(n));
    keep_input(buf + used, static_cast<std::size_t>(n) - used);
    flush();
}

// Parses what the flight's input holds, where it is, and keeps the rest.
void connection::consume_stashed()
{
    flight& f = *fl_;
    std::size_t used = consume(f.in.data(), f.in.size());
    // consume() never drops the flight nor touches `in`: closing waits for flush().
    if (closing_ || state_ == st_closed) {
        if (used < f.in.size())
            linger_ = true;  // unanswered input: the peer may still be sending
        f.in.clear();
        f.partial_head = false;
    } else if (used) {
        f.in.erase(0, used);
    }
    flush();
}

// Keeps input that consume() left, for the next event.
void connection::keep_input(const char* p, std::size_t n)
{
    if (n == 0)
        return;
    if (closing_ || state_ == st_closed) {
        linger_ = true;
        return;
    }
    fl().in.append(p, n);
}

namespace {

// An unlinked file for a request body: O_TMPFILE where the system and the
// file system have it, else mkstemp and unlink (other kernels, some file
// systems, e.g. older overlayfs or NFS).
int open_spool(const std::string& dir)
{
#if defined(O_TMPFILE) && FAPWS_REACTOR_EPOLL
    int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd;
#endif
    std::string path = dir + "/fapws-body-XXXXXX";
    int fd2 = ::mkostemp(path.data(), O_CLOEXEC);
    if (fd2 >= 0)
        ::unlink(path.c_str());
    return fd2;
}

}  // namespace

void connection::append(void* self_, std::string_view bytes, beast_error& ec)
{
    connection& self = *static_cast<connection*>(self_);
    auto& fl_ = self.fl_;
    auto& srv_ = self.srv_;
    ec = {};
    if (fl_ && fl_->stream) {
        fl_->stream->deliver(bytes);  // no spool: the reader holds the socket back
        return;
    }
    request_body& b = fl_ && fl_->parser ? fl_->body : srv_.body_;
    std::uint64_t total = b.size_ + bytes.size();
    if (b.fd_ < 0 && total > srv_.cfg_.body_memory_limit && !srv_.head_in_put_) {
        // Spool to an unlinked file: a 1 GiB upload never sits in memory.
        const std::string& dir = srv_.cfg_.spool_dir;
        int fd = open_spool(dir);
        if (fd < 0) {
            log_error("cannot create a spool file in " + dir + ": " + std::strerror(errno));
            self.spool_failed_ = true;  // the server's fault: 500, not 413
            ec = http::error::body_limit;
            return;
        }
        std::string_view have = b.view_.data() ? b.view_ : std::string_view(b.mem_);
        b.fd_ = fd;
        if (!have.empty() && ::write(fd, have.data(), have.size()) != ssize_t(have.size())) {
            log_error(std::string("spool write failed: ") + std::strerror(errno));
            self.spool_failed_ = true;
            ec = http::error::body_limit;
            return;
        }
        b.mem_.clear();
        b.mem_.shrink_to_fit();
        b.view_ = {};
    }
    if (b.fd_ >= 0) {
        const char* p = bytes.data();
        std::size_t left = bytes.size();
        while (left) {
            ssize_t w = ::write(b.fd_, p, left);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                log_error(std::string("spool write failed: ") + std::strerror(errno));
                self.spool_failed_ = true;
                ec = http::error::body_limit;
                return;
            }
            p += w;
            left -= static_cast<std::size_t>(w);
        }
    } else if (b.size_ == 0 && b.mem_.empty() && !b.view_.data()) {
        // Common case: the whole body arrived with the head; borrow it.
        b.view_ = bytes;
    } else {
        if (b.view_.data() && b.view_.data() != b.mem_.data()) {
            b.mem_.assign(b.view_);
        }
        b.mem_.append(bytes);
        b.view_ = {};
    }
    b.size_ = total;
    ec = {};
}

// Moves a request whose head or body is incomplete out of the loop-owned
// scratch, so the read buffer can be reused.
void connection::stash_request(const char* end)
{
    if (fl_ && fl_->parser) {
        // Already owned; only a borrowed body slice needs copying.
        request_body& b = fl_->body;
        if (b.fd_ < 0 && b.view_.data() && b.view_.data() != b.mem_.data()) {
            b.mem_.assign(b.view_);
            b.view_ = {};
        }
        if (fl_->parser->is_header_done() && !fl_->req.owns_bytes())
            fl_->req.own_head(head_length(fl_->req.method_.data(), end));
        return;
    }
    flight& f = fl();
    request_parser& ps = *srv_.parser_;
    f.req = std::move(srv_.req_);
    if (ps.is_header_done())
        f.req.own_head(head_length(f.req.method_.data(), end));
    f.body.take(srv_.body_);
    f.parser.emplace(std::move(*srv_.parser_));
    f.parser->retarget(f.req);
    srv_.parser_.reset();
}

// Parses and answers the requests [p, p+n) holds. Returns how many bytes it
// used; the caller keeps the rest (a partial request, or pipelined requests
// waiting for the current response) and then flushes. Never drops the
// flight: the input may live in it.
std::size_t connection::consume(const char* p, std::size_t n)
{
    const char* const begin = p;
    // Bytes at p already scanned by an earlier call (the flight's input
    // starts where that call stopped); zero once p moves.
    std::size_t from = fl_ && p == fl_->in.data() ? fl_->scanned : 0;
    if (fl_) {
        fl_->partial_head = false;
        fl_->scanned = 0;
    }
    std::size_t answered = 0;
    if (proxy_pending_ && n > 0) {
        int r = read_proxy(p, n);
        if (r < 0) {
            answer_error(400);
            return static_cast<std::size_t>(p - begin) + n;
        }
        if (r == 0) {
            fl().partial_head = true;  // the rest of the PROXY header
            return static_cast<std::size_t>(p - begin);
        }
        from = 0;
    }
    while (n > 0 && state_ == st_reading) {
        request_parser& ps = parser();
        const char* start = p;
        if (!ps.got_some()) {
            if (!start_head(p, n, from))
                break;
            if (n == 0 || (fl_ && fl_->partial_head))
                break;  // used up, or waiting for the rest of a head
        }
        bool had_header = ps.is_header_done();
        beast_error ec;
        ps.input(p, p + n);
        srv_.head_in_put_ = !had_header;
        std::size_t used = ps.put(net::const_buffer(p, n), ec);
        srv_.head_in_put_ = false;
        p += used;
        n -= used;
        if (used)
            from = 0;
        if (ec == http::error::need_more)
            ec = {};
        if (ec) {
            refuse(ec, start, static_cast<std::size_t>(p - start) + n);
            break;
        }
        if (!had_header && ps.is_header_done()) {
            if (!begin_body()) {
                reset_parser();
                break;
            }
            if (streams_body(ps)) {
                // The handler is called now and reads the body as it comes.
                const bool done = ps.is_done();
                if (!done && !bounded_stall(p, n, from))
                    break;
                start_body_stream(p + n, done);  // may move the parser: ps is stale
                if (done) {
                    reset_parser();
                } else if (state_ == st_reading) {
                    fl_->scanned = from;
                    schedule(wait_list::io);
                }
                break;
            }
        }
        if (!ps.is_done()) {
            // Body incomplete. What Beast left unparsed is a chunk-size line
            // or the trailer section, never body bytes: bound it.
            if (!bounded_stall(p, n, from))
                break;
            stash_request(p + n);
            fl_->scanned = from;
            // A streamed body's pace is the reader's too: no rate to check.
            if (!fl_->stream && too_slow())
                break;
            schedule(wait_list::io);
            break;
        }
        if (fl_ && fl_->stream) {
            // The streamed body is complete; its answer may still be pending.
            end_body_stream({});
            reset_parser();
            if (ex_)
                state_ = st_waiting;
            break;
        }
        dispatch();
        reset_parser();
        if (state_ != st_reading || closing_ || ++answered >= srv_.cfg_.max_pipelined)
            break;
    }
    // The loop's scratch parser never outlives this call: its body sink
    // points at this connection, which may be gone before the next one
    // parses (a fuzzed CRLF after a request left it behind: use-after-free).
    srv_.parser_.reset();
    return static_cast<std::size_t>(p - begin);
}

namespace {

constexpr char proxy_v2_sig[12] = {'\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T', '\n'};

bool parse_port(std::string_view s, std::uint16_t& out)
{
    unsigned v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v > 65535)
        return false;
    out = static_cast<std::uint16_t>(v);
    return true;
}

}  // namespace

// HAProxy's PROXY protocol (v1 text, v2 binary) before the first request:
// the client's address, as the proxy saw it, replaces the proxy's. Returns
// 1 when read (p, n moved past it), 0 when more bytes are needed, -1 when
// the connection does not start with a valid header.
int connection::read_proxy(const char*& p, std::size_t& n)
{
    std::string_view in(p, n);
    std::size_t used = 0;
    bool named = false, v6 = false;
    std::uint32_t v4 = 0;
    unsigned char a6[16];
    std::uint16_t port = 0;
    if (in.size() < 6 ? std::string_view("PROXY ").substr(0, in.size()) == in : in.substr(0, 6) == "PROXY ") {
        auto eol = in.find("\r\n");
        if (eol == std::string_view::npos)
            return in.size() >= 107 ? -1 : 0;  // 107: the longest v1 line
        if (eol > 105)
            return -1;
        std::string_view line = in.substr(6, eol - 6);
        used = eol + 2;
        std::string_view part[5];
        int k = 0;
        while (k < 5 && !line.empty()) {
            auto sp = line.find(' ');
            part[k++] = line.substr(0, sp);
            line = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
        }
        if (k >= 1 && part[0] == "UNKNOWN") {
            named = false;
        } else if (k == 5 && line.empty() && (part[0] == "TCP4" || part[0] == "TCP6")) {
            char buf[INET6_ADDRSTRLEN];
            if (part[1].size() >= sizeof buf)
                return -1;
            part[1].copy(buf, part[1].size());
            buf[part[1].size()] = '\0';
            v6 = part[0] == "TCP6";
            std::uint16_t dport;
            if (::inet_pton(v6 ? AF_INET6 : AF_INET, buf, v6 ? static_cast<void*>(a6) : &v4) != 1 ||
                !parse_port(part[3], port) || !parse_port(part[4], dport))
                return -1;
            named = true;
        } else {
            return -1;
        }
    } else if (std::memcmp(in.data(), proxy_v2_sig, std::min<std::size_t>(in.size(), 12)) == 0) {
        if (in.size() < 16)
            return 0;
        const auto* b = reinterpret_cast<const unsigned char*>(in.data());
        std::size_t len = (std::size_t(b[14]) << 8) | b[15];
        if ((b[12] >> 4) != 2 || len > 1024)
            return -1;
        if (in.size() < 16 + len)
            return 0;
        used = 16 + len;
        const int command = b[12] & 0xF;
        if (command == 1 && b[13] == 0x11 && len >= 12) {
            std::memcpy(&v4, b + 16, 4);
            port = static_cast<std::uint16_t>((b[24] << 8) | b[25]);
            named = true;
        } else if (command == 1 && b[13] == 0x21 && len >= 36) {
            std::memcpy(a6, b + 16, 16);
            port = static_cast<std::uint16_t>((b[48] << 8) | b[49]);
            named = v6 = true;
        } else if (command > 1) {
            return -1;
        }
        // LOCAL (a health check), or another family: the real peer stays.
    } else {
        return -1;
    }
    proxy_pending_ = false;
    if (named) {
        peer_port_ = port;
        peer_is_v6_ = v6;
        if (v6)
            std::memcpy(peer_v6_, a6, 16);
        else
            peer_v4_ = v4;
    }
    p += used;
    n -= used;
    return 1;
}

// At the start of a request: skips empty lines before it (RFC 9112 section
// 2.2: ignore at least one, as after a body sent with a stray CRLF), then lets
// Beast see the head only once it is whole, so no view ever points into a
// buffer the next read reuses. Returns false when it answered an error.
bool connection::start_head(const char*& p, std::size_t& n, std::size_t& from)
{
    while (n >= 2 && p[0] == '\r' && p[1] == '\n') {
        p += 2;
        n -= 2;
        from = from > 2 ? from - 2 : 0;
    }
    if (n == 0)
        return true;
    switch (scan_head(p, n, from)) {
    case head_scan::bad:
        reset_parser();
        answer_error(400);
        return false;
    case head_scan::partial:
        if (n >= srv_.cfg_.header_limit) {
            reset_parser();
            answer_error(431);
            return false;
        }
        if (!fl_ || !fl_->parser)
            srv_.parser_.reset();  // untouched; the next request gets a fresh one
        fl().partial_head = true;
        fl_->scanned = from;  // set after consume() cleared it: p is where `in` will start
        schedule(wait_list::header);
        return true;
    case head_scan::complete:
        // The trailer section, if any, shares the head's budget.
        parser().trailer_budget(srv_.cfg_.header_limit - std::min(from, srv_.cfg_.header_limit));
        return true;
    }
    return true;
}

// Beast parses a chunk-size line, or the trailer section after the last
// chunk, only once it is whole, and leaves it unconsumed until then: bound
// what that makes us hold (a chunk line by header_line_limit, trailers by
// what header_limit leaves after the head), and refuse a bare LF there, which
// Beast would pass over while it waits for a CRLF. `from` is how much of
// [p, p+n) an earlier call checked; it becomes n.
bool connection::bounded_stall(const char* p, std::size_t n, std::size_t& from)
{
    const std::size_t line_limit = srv_.cfg_.header_line_limit;
    // The first line ended after the CRLF that closes the previous chunk's
    // data: only the last chunk's line stalls once whole, so trailers follow.
    std::size_t look = std::min(n, line_limit + 2);
    bool trailers = look > 2 && std::memchr(p + 2, '\n', look - 2) != nullptr;
    std::size_t limit = trailers ? parser().trailer_left() + line_limit : line_limit;
    int status = trailers ? 431 : 400;
    if (n <= limit) {
        status = 0;
        for (std::size_t i = from; i < n; ++i) {
            const void* lf = std::memchr(p + i, '\n', n - i);
            if (!lf)
                break;
            i = static_cast<std::size_t>(static_cast<const char*>(lf) - p);
            if (i == 0 || p[i - 1] != '\r') {
                status = 400;
                break;
            }
        }
        from = n;
    }
    if (!status)
        return true;
    reset_parser();
    answer_error(status);
    return false;
}

// The body's average rate, checked on each read once io_timeout has passed
// since it began (config::body_min_rate): a trickle gets 408 and a close.
bool connection::too_slow()
{
    const std::uint32_t rate = srv_.cfg_.body_min_rate;
    if (!rate)
        return false;
    const std::int64_t now = now_ms();
    flight& f = *fl_;
    if (!f.body_since) {
        f.body_since = now;
        return false;
    }
    const std::int64_t allowed = srv_.cfg_.io_timeout.count() +
                                 static_cast<std::int64_t>(f.parser->body_bytes() * 1000 / rate);
    if (now - f.body_since <= allowed)
        return false;
    ++srv_.stats_.timeouts_io;
    reset_parser();
    answer_error(408);
    return true;
}

// Answers a request the parser refused, with the status its reason calls for.
void connection::refuse(beast_error ec, const char* start, std::size_t n)
{
    request_parser& ps = parser();
    int status = 400;
    using v = request_parser::verdict;
    if (ec == http::error::header_limit || ps.why() == v::line_too_long || ps.why() == v::too_large)
        status = 431;
    else if (ps.why() == v::uri_too_long)
        status = 414;
    else if ((ec == http::error::bad_version && well_formed_version(start, n)) || ps.why() == v::bad_version)
        status = 505;
    else if (ec == http::error::body_limit)
        status = std::exchange(spool_failed_, false) ? 500 : 413;
    else if (ps.why() == v::not_implemented)
        status = 501;
    reset_parser();
    answer_error(status);
}

// The head is complete: route, refuse early, answer Expect: 100-continue.
bool connection::begin_body()
{
    request_parser& ps = parser();
    request& req = fl_ && fl_->parser ? fl_->req : srv_.req_;
    req.listener_ = where_;
    req.fd_ = fd_;
    req.peer_v4_ = peer_v4_;
    req.peer_port_ = peer_port_;
    req.peer_is_v6_ = peer_is_v6_;
    if (srv_.access_timed_ || srv_.cfg_.latency_histogram)
        req.started_us_ = std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::steady_clock::now().time_since_epoch())
                              .count();
    if (peer_is_v6_)
        std::memcpy(req.peer_v6_, peer_v6_, sizeof peer_v6_);
    router::match m = srv_.router_.find(req.path_);
    req.handler_ = m.target;
    req.async_handler_ = m.async_target;
    req.route_options_ = m.options;
    req.mount_len_ = m.prefix_len;
    if (m.options && m.options->on_head && !answer_head(req, *m.options, ps.has_body()))
        return false;
    if (!ps.has_body())
        return true;
    if (!m.found()) {
        // Do not read a body nobody wants.
        ++srv_.stats_.not_found;
        answer_error(404);
        return false;
    }
    if (!m.options->allows(req.method_)) {
        answer_error(405, "Allow: " + m.options->allow_header() + "\r\n");
        return false;
    }
    if (const std::uint64_t limit = m.options->body_limit; limit && limit < srv_.cfg_.body_limit) {
        // Beast checked the server's limit; this one is checked here for a
        // declared length, then by Beast as chunks come.
        auto declared = ps.content_length();
        if ((declared && *declared > limit) || ps.body_bytes() > limit) {
            answer_error(413);
            return false;
        }
        if (!declared)
            ps.body_limit(limit - ps.body_bytes());
    }
    if (ps.expect_continue() && req.version_ == 11 && ps.body_bytes() == 0)
        srv_.out_.append(continue_line);
    return true;
}

bool connection::streams_body(const request_parser& ps) const noexcept
{
    const request& req = fl_ && fl_->parser ? fl_->req : srv_.req_;
    return ps.has_body() && req.async_handler_ && req.route_options_ && req.route_options_->stream_body;
}

// A route with route_options::stream_body: its handler gets the request
// once the head is complete, and the body through a body_reader. Bytes
// that came with the head are already parsed: they go first.
void connection::start_body_stream(const char* end, bool done)
{
    if (!done)
        stash_request(end);  // the body spans events: the flight holds the parser
    const bool slow = fl_ && fl_->parser;
    request& req = slow ? fl_->req : srv_.req_;
    request_body& body = slow ? fl_->body : srv_.body_;
    auto s = std::make_shared<body_stream>(*this, srv_.ioc_.get_executor());
    s->buf.assign(body.view_.data() ? body.view_ : std::string_view(body.mem_));
    body.reset();  // less than one read: never spooled
    if (done)
        s->stop({});
    else
        fl_->stream = s;
    ++srv_.stats_.requests;
    dispatch_async(req, body, std::move(s));
    // Until the body's end the connection reads for the handler.
    if (!done && state_ == st_waiting)
        state_ = st_reading;
}

// The handler answered before the streamed body's end: the rest is not
// read, its reader learns why, and the connection closes after the answer.
void connection::cut_body_stream() noexcept
{
    if (!fl_ || !fl_->stream)
        return;
    end_body_stream(async_error::already_completed);
    closing_ = true;
    linger_ = true;
}

// The connection lets go of a streamed body: complete (why is empty) or cut.
void connection::end_body_stream(error_code why) noexcept
{
    fl_->stream->stop(why);
    fl_->stream.reset();
    fl_->reader_full = false;
}

// The reader took bytes: read from the socket again if that was held back.
void connection::reader_drained()
{
    if (state_ != st_reading || !fl_ || !fl_->reader_full || !fl_->stream ||
        fl_->stream->available() >= high_water())
        return;
    fl_->reader_full = false;
    schedule(wait_list::io);
    wait_ = wait_none;
    wait_read();
}

void connection::dispatch()
{
    bool slow = fl_ && fl_->parser;
    request& req = slow ? fl_->req : srv_.req_;
    request_body& body = slow ? fl_->body : srv_.body_;
    if (body.fd_ < 0 && !body.view_.data())
        body.view_ = body.mem_;
    // Every view the handler sees lies in memory this request owns: the
    // flight's copy of the head, or the input being parsed right now.
    assert(slow ? request_parser::owns_views(req, req.storage_.get(), req.storage_.get() + req.storage_len_)
                : request_parser::owns_views(req, parser().input_begin(), parser().input_end()));
    req.body_ = &body;
    // The 100 Continue line was only for a body we were about to read.
    if (srv_.out_.size() >= continue_line.size() &&
        std::string_view(srv_.out_).substr(srv_.out_.size() - continue_line.size()) == continue_line &&
        body.size_ == 0)
        srv_.out_.resize(srv_.out_.size() - continue_line.size());

    ++srv_.stats_.requests;
    if (req.async_handler_)
        return dispatch_async(req, body);
    response& res = srv_.res_;
    res.clear();
    if (!req.handler_) {
        ++srv_.stats_.not_found;
        res.status(404);
        res.header("Content-Type", "text/plain; charset=utf-8");
        res.body_ref("Not Found\n");
    } else {
        try {
            (*req.handler_)(req, res);
        } catch (const std::exception& e) {
            ++srv_.stats_.handler_errors;
            log_error(std::string("handler for ") + std::string(req.target_) + " failed: " + e.what());
            internal_error(res);
        } catch (...) {
            ++srv_.stats_.handler_errors;
            log_error("handler for " + std::string(req.target_) + " failed");
            internal_error(res);
        }
    }
    final_status(req, res);
    if (!emit(req, res, srv_.out_))
        park(adopt(req, body), std::move(res));
}

// A 1xx is never a final answer: the client would take the next response
// for this request's, and after 101 expect another protocol.
void connection::final_status(const request& req, response& res)
{
    if (res.status_ >= 200)
        return;
    ++srv_.stats_.handler_errors;
    log_error("handler for " + std::string(req.target_) + " answered " + std::to_string(res.status_) +
              ", which is not a final status; sent 500");
    internal_error(res);
}

}  // namespace fapws::detail

namespace fapws::detail {

// Serialises the response head (and a small body) into the loop's output
// buffer, or hands a large body to the flight. False when the body's source
// paused before its first byte: nothing was written, the caller parks the
// response until the source resumes.
bool connection::emit(request& req, response& res, std::string& out)
{
    std::string& stage = srv_.stage_;
    stage.clear();
    bool source_done = false;
    std::optional<std::uint64_t> actual;
    for (int attempt = 0; attempt < 2; ++attempt) {
        switch (res.kind_) {
        case response::kind::none: actual = 0; break;
        case response::kind::owned: actual = res.owned_.size(); break;
        case response::kind::borrowed: actual = res.borrowed_.size(); break;
        case response::kind::file: actual = res.file_length_; break;
        case response::kind::pushed: break;  // unknown unless the head declared it
        case response::kind::stream:
            actual = res.source_->size();
            res.source_->conn_ = this;
            // Pulled before the head: the first non-empty block, which
            // leaves with it (PEP 3333: nothing held back); a gathering
            // source up to 16 KiB, so a body that ends there gets a
            // Content-Length. An error raised here can still become a 500.
            // A head without a body (HEAD, 204, 304) pulls nothing.
            if ((res.source_->gathers() && (!actual || *actual <= inline_body) && !res.content_length_) ||
                (!res.source_->gathers() && !req.head_ && body_allowed(res.status_))) {
                const std::size_t want = res.source_->gathers() ? inline_body + 1 : 1;
                try {
                    std::string_view b;
                    while (stage.size() < want) {
                        res.source_->paused_ = false;
                        if (!res.source_->next(b)) {
                            source_done = true;
                            break;
                        }
                        stage.append(b);
                        if (res.source_->paused_) {
                            if (stage.empty())
                                return false;
                            break;  // the head leaves with what is in hand
                        }
                    }
                } catch (const std::exception& e) {
                    ++srv_.stats_.handler_errors;
                    log_error("response body for " + std::string(req.target_) + " failed: " + e.what());
                    stage.clear();
                    internal_error(res);
                    continue;
                }
                if (source_done)
                    actual = stage.size();
            }
            try {
                res.source_->before_head(res);
            } catch (const std::exception& e) {
                ++srv_.stats_.handler_errors;
                log_error("response head for " + std::string(req.target_) + " failed: " + e.what());
                stage.clear();
                internal_error(res);
                continue;
            }
            break;
        }
        break;
    }

    const int status = res.status_;
    std::optional<std::uint64_t> declared = res.content_length_ ? res.content_length_ : actual;
    const framing fr = frame(status, req.version_, req.keep_alive_,
                             res.close_ || closing_ || draining_ || srv_.stopping_, declared);
    const bool allowed = fr.body;
    const bool chunked = fr.chunked;
    const bool keep = fr.keep;

    // The head in one copy (head_writer): a dozen std::string::append calls
    // cost the C++ hello about 270 instructions more when the linker picked
    // a long out-of-line copy of append (callgrind, 2026-11-30).
    head_writer h;
    char status_digits[3];
    open_head(h, status_digits, status, res.reason_.empty() ? reason_phrase(status) : std::string_view(res.reason_),
              res.has_server_ ? std::string_view() : std::string_view(srv_.cfg_.server_header), !res.has_date_);
    h.add(res.fields_);
    char length_digits[24];
    if (fr.length) {
        h.add("Content-Length: "sv);
        h.add(format_uint(length_digits, *declared));
        h.add("\r\n"sv);
    } else if (chunked) {
        h.add("Transfer-Encoding: chunked\r\n"sv);
    }
    if (!keep)
        h.add("Connection: close\r\n"sv);
    else if (req.version_ == 10)
        h.add("Connection: keep-alive\r\n"sv);
    h.add("\r\n"sv);
    h.write(out);
    if (!keep)
        closing_ = true;
    ++srv_.stats_.responses[status / 100 <= 5 ? status / 100 : 0];
    if (srv_.cfg_.latency_histogram && req.started_us_)
        srv_.count_latency(req.started_us_);
    if (srv_.access_fd_ >= 0)
        srv_.log_access(req, status, allowed && !req.head_ ? declared.value_or(0) : 0, req.started_us_);

    if (!allowed || req.head_) {
        if (res.kind_ == response::kind::pushed)
            start_pushed(false, 0);  // the writer's bytes are dropped
        res.clear();
        return true;
    }
    const std::uint64_t limit = declared.value_or(UINT64_MAX);

    switch (res.kind_) {
    case response::kind::none:
        break;
    case response::kind::pushed:
        start_pushed(chunked, declared);
        break;
    case response::kind::owned:
    case response::kind::borrowed: {
        std::string_view d = res.kind_ == response::kind::owned ? std::string_view(res.owned_) : res.borrowed_;
        if (d.size() > limit)
            d = d.substr(0, static_cast<std::size_t>(limit));
        else if (d.size() < limit)
            closing_ = true;  // the app declared more than it gave
        if (d.size() <= inline_body) {
            out.append(d);
            break;
        }
        flight& f = fl();
        f.kind = flight::body_kind::view;
        if (res.kind_ == response::kind::owned) {
            f.owned = std::move(res.owned_);
            f.view = std::string_view(f.owned).substr(0, d.size());
        } else {
            f.view = d;
            f.holds = std::move(res.holds_);
        }
        state_ = st_writing;
        break;
    }
    case response::kind::file: {
        flight& f = fl();
        f.kind = flight::body_kind::file;
        f.file_owned = res.file_owned_;
        f.file_fd = std::exchange(res.file_fd_, -1);
        f.holds = std::move(res.holds_);
        f.file_off = static_cast<off_t>(res.file_offset_);
        f.left = std::min<std::uint64_t>(res.file_length_, limit);
        if (res.file_length_ < limit)
            closing_ = true;
        f.has_length = true;
        if (f.left == 0)
            f.drop_body();
        else
            state_ = st_writing;
        break;
    }
    case response::kind::stream: {
        std::string_view d = stage;
        if (d.size() > limit)
            d = d.substr(0, static_cast<std::size_t>(limit));
        if (!d.empty()) {
            if (chunked) {
                append_chunk(out, d);
            } else {
                out.append(d);
            }
        }
        if (source_done || d.size() == limit) {
            if (chunked)
                out.append("0\r\n\r\n");
            else if (d.size() < limit)
                closing_ = true;
            break;
        }
        flight& f = fl();
        f.kind = flight::body_kind::source;
        f.gather = res.source_->gathers();
        f.source = std::move(res.source_);
        f.holds = std::move(res.holds_);
        f.chunked = chunked;
        f.has_length = declared.has_value();
        f.left = declared ? *declared - d.size() : 0;
        state_ = st_writing;
        break;
    }
    }
    res.clear();
    return true;
}

// A stock answer for a request we refuse, then close: the rest of the input
// is discarded by the caller (it may be the buffer being parsed).
// A body_writer's body follows the head just built.
void connection::start_pushed(bool chunked, std::optional<std::uint64_t> length)
{
    flight& f = fl();
    f.kind = flight::body_kind::pushed;
    f.chunked = chunked;
    f.has_length = length.has_value();
    f.left = length.value_or(0);
    f.pushed_end = false;
    state_ = st_writing;
}

void connection::answer_error(int status, std::string_view fields)
{
    std::string_view text = reason_phrase(status);
    auto& st = srv_.stats_;
    switch (status) {
    case 400: ++st.bad_requests; break;
    case 413: ++st.body_too_large; break;
    case 414:
    case 431: ++st.header_too_large; break;
    case 505: ++st.bad_version; break;
    default: break;
    }
    ++st.responses[status / 100 <= 5 ? status / 100 : 0];
    head_writer h;
    char status_digits[3], length_digits[24];
    open_head(h, status_digits, status, text, srv_.cfg_.server_header, true);
    h.add(fields);
    h.add("Content-Type: text/plain; charset=utf-8\r\nContent-Length: "sv);
    h.add(format_uint(length_digits, text.size() + 1));
    h.add("\r\nConnection: close\r\n\r\n"sv);
    h.add(text);
    h.add("\n"sv);
    h.write(srv_.out_);
    closing_ = true;
    linger_ = true;
    if (fl_) {
        fl_->partial_head = false;
        fl_->parser.reset();
        if (fl_->stream)
            fail_async(async_error::body_refused);  // this answer is the request's: the handler's is not sent
    }
}

// Sends what the loop buffer holds; what the socket does not take moves to
// the flight. Then decides what the connection waits for next.
void connection::flush()
{
    std::string& out = srv_.out_;
    if (!out.empty()) {
        if (fl_ && fl_->out_pos < fl_->out.size()) {
            fl_->out.append(out);
        } else {
            ssize_t w = ::send(fd_, out.data(), out.size(), send_flags);
            if (w < 0) {
                if (errno != EAGAIN && errno != EINTR) {
                    out.clear();
                    ++srv_.stats_.io_errors;
                    return close();
                }
                w = 0;
            }
            srv_.stats_.bytes_out += static_cast<std::uint64_t>(w);
            if (static_cast<std::size_t>(w) < out.size()) {
                flight& f = fl();
                f.out.assign(out, static_cast<std::size_t>(w));
                f.out_pos = 0;
            }
        }
        out.clear();
    }
    proceed();
}

void connection::proceed()
{
    if (state_ == st_closed)
        return;
    const bool waiting = state_ == st_waiting;
    if (fl_ && (fl_->out_pos < fl_->out.size() || fl_->kind != flight::body_kind::none)) {
        if (!waiting)
            state_ = st_writing;
        return pump();
    }
    if (waiting)
        return wait_app();
    // A graceful stop lets a request whose bytes are arriving finish (its
    // answer will say Connection: close); an idle connection closes.
    bool mid_request = fl_ && (fl_->parser || fl_->partial_head);
    if (closing_ || (draining_ && !mid_request))
        return linger();
    state_ = st_reading;
    if (fl_) {
        if (fl_->stream && fl_->stream->available() >= high_water()) {
            // The handler has a block to read: the client waits for it.
            fl_->reader_full = true;
            return wait_app();
        }
        if (fl_->parser || fl_->partial_head)
            return wait_read();  // a partial request: its timeout is already set
        if (!fl_->in.empty())
            return post<&connection::resume>();
        drop_flight();
    }
    schedule(wait_list::keepalive);
    wait_read();
}

// Runs a member function later from the loop (its ready queue, after the
// events already seen), holding a reference.
template <void (connection::*Fn)()>
void connection::post()
{
    add_ref();
    srv_.queue({this, [](connection* c) {
                               if (c->state_ != st_closed)
                                   (c->*Fn)();
                               c->release();
                           }});
}

// Answers pipelined requests left over from an earlier turn.
void connection::resume()
{
    if (!fl_ || fl_->in.empty() || state_ != st_reading)
        return proceed();
    consume_stashed();
}

void connection::pump()
{
    conn_ref hold(*this);
    flight& f = *fl_;
    const int fd = fd_;
    std::size_t sent = 0;
    schedule(wait_list::io);
    for (;;) {
        while (f.out_pos < f.out.size()) {
            ssize_t w = ::send(fd, f.out.data() + f.out_pos, f.out.size() - f.out_pos, send_flags);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN) {
                    // A body_writer may go on once its bytes are under the mark.
                    if (f.write_done && buffered() <= high_water())
                        complete(std::move(f.write_done), {});
                    return wait_write();
                }
                ++srv_.stats_.io_errors;
                return close();
            }
            f.out_pos += static_cast<std::size_t>(w);
            sent += static_cast<std::size_t>(w);
            srv_.stats_.bytes_out += static_cast<std::uint64_t>(w);
        }
        f.out.clear();
        f.out_pos = 0;
        if (f.kind == flight::body_kind::none)
            break;
        if (f.kind == flight::body_kind::pushed) {
            // All the writer gave is sent: wait for more, or end the body.
            if (f.write_done)
                complete(std::move(f.write_done), {});
            if (!f.pushed_end)
                return wait_app();
            if (f.has_length && f.left > 0) {
                log_warning("streamed body shorter than its Content-Length; connection closed");
                return close();
            }
            auto done = std::move(f.finish_done);
            f.drop_body();
            if (done)
                complete(std::move(done), {});
            break;
        }
        if (sent >= (f.kind == flight::body_kind::file ? sendfile_quantum : write_quantum))
            return post<&connection::pump>();  // let the other connections run

        ssize_t w = 0;
        switch (f.kind) {
        case flight::body_kind::none:
        case flight::body_kind::pushed:
            break;
        case flight::body_kind::view:
            w = ::send(fd, f.view.data(), std::min(f.view.size(), write_quantum), send_flags);
            if (w > 0) {
                f.view.remove_prefix(static_cast<std::size_t>(w));
                if (f.view.empty())
                    f.drop_body();
            }
            break;
        case flight::body_kind::file:
            w = send_file(fd, f.file_fd, &f.file_off,
                          static_cast<std::size_t>(std::min<std::uint64_t>(f.left, sendfile_quantum)));
            if (w == 0) {
                log_error("file shrank while being sent; connection closed");
                return close();
            }
            if (w > 0) {
                f.left -= static_cast<std::uint64_t>(w);
                if (f.left == 0)
                    f.drop_body();
            }
            break;
        case flight::body_kind::source:
            // One block, handed to the socket before the next is pulled; a
            // gathering source's small blocks are joined up to one
            // block_size per write. Nothing more is pulled until the socket
            // took what is in hand.
            while (f.kind == flight::body_kind::source && f.out.size() < srv_.cfg_.block_size &&
                   (f.gather || f.out.empty())) {
                std::string_view b;
                bool more;
                try {
                    f.source->paused_ = false;
                    more = f.source->next(b);
                } catch (const std::exception& e) {
                    ++srv_.stats_.handler_errors;
                    log_error(std::string("response body failed after the head was sent: ") + e.what());
                    return close();
                }
                if (more && b.empty() && f.source->paused_) {
                    if (!f.out.empty())
                        break;  // send what is in hand first
                    return wait_app();  // until resume(); the client is still watched
                }
                if (!more) {
                    if (f.has_length && f.left > 0) {
                        log_warning("response body shorter than its Content-Length; connection closed");
                        return close();
                    }
                    if (f.chunked)
                        f.out.append("0\r\n\r\n");
                    f.drop_body();
                    break;
                }
                if (f.has_length && b.size() > f.left)
                    b = b.substr(0, static_cast<std::size_t>(f.left));
                if (b.empty())
                    continue;
                if (f.has_length)
                    f.left -= b.size();
                if (f.chunked) {
                    append_chunk(f.out, b);
                } else {
                    f.out.append(b);
                }
                if (f.has_length && f.left == 0)
                    f.drop_body();
            }
            break;
        }
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return wait_write();
            ++srv_.stats_.io_errors;
            return close();
        }
        sent += static_cast<std::size_t>(w);
        srv_.stats_.bytes_out += static_cast<std::uint64_t>(w);
    }
    // The response is complete.
    if (state_ == st_writing)
        state_ = st_reading;
    proceed();
}

// Closes after the last response. When input may still be unread, shut the
// write side and drain for a while first, so the kernel does not answer the
// client's next bytes with a reset that destroys our response in flight.
void connection::linger()
{
    const int fd = fd_;
    if (state_ != st_lingering) {
        // Input we read but will not answer (requests pipelined after a
        // Connection: close) means the peer may still be sending.
        if (fl_ && !fl_->in.empty())
            linger_ = true;
        if (!linger_) {
            ::shutdown(fd, SHUT_WR);
            return close();
        }
        state_ = st_lingering;
        drop_flight();
        ::shutdown(fd, SHUT_WR);
        schedule(wait_list::linger);
    }
    for (int i = 0; i < 16; ++i) {
        ssize_t n = ::recv(fd, srv_.rbuf_.get(), srv_.rbuf_size_, 0);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            readable_ = false;
            return wait_read();
        }
        return close();
    }
    wait_read();  // still sending: keep draining, after the others had a turn
}

void connection::on_timeout() noexcept
{
    auto& st = srv_.stats_;
    switch (list_) {
    case wait_list::header:
        ++st.timeouts_header;
        if (fl_ && (fl_->parser || !fl_->in.empty())) {
            // Part of a head arrived: say why before closing (best effort).
            static constexpr std::string_view msg =
                "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            [[maybe_unused]] auto r = ::send(fd_, msg.data(), msg.size(),
                                             send_flags | MSG_DONTWAIT);
        }
        break;
    case wait_list::keepalive: ++st.timeouts_keepalive; break;
    case wait_list::io: ++st.timeouts_io; break;
    default: break;
    }
    close();
}

void connection::drain() noexcept
{
    if (state_ == st_closed)
        return;
    // An idle connection stays for config::drain_grace (the server closes
    // it then): a request already on its way is answered, with
    // Connection: close.
    if (idle() && srv_.cfg_.drain_grace.count() == 0)
        return close();
    // A paused body (a subscriber waiting for its next event) has no end
    // in sight: it ends now, and its source learns it by being destroyed.
    if (paused_body())
        return close();
    draining_ = true;
}

bool connection::paused_body() const noexcept
{
    if (state_ == st_waiting)
        return ex_ && ex_owned_ && ex_->answer && ex_->answer->source_ && ex_->answer->source_->paused_;
    return fl_ && fl_->kind == flight::body_kind::source && wait_ == wait_on_app && fl_->source->paused_ &&
           fl_->out_pos >= fl_->out.size();
}

void connection::close() noexcept
{
    if (state_ == st_closed)
        return;
    conn_ref hold(*this);  // an exchange dropped with the flight may hold the last other reference
    state_ = st_closed;
    srv_.untrack(*this);
    fail_async(srv_.stopping_ ? async_error::server_stopping : async_error::client_gone);
    drop_flight();
#if !FAPWS_REACTOR_EPOLL
    if (sock_) {
        sock_->release();  // leaves Asio's reactor; pending waits end with operation_aborted
        sock_.reset();
    }
#endif
    ::close(fd_);  // leaves the epoll set with it
    srv_.closed(*this);
    --refs_;  // the registration's reference; `hold` ends last and may delete this
}

// ---------------------------------------------------------------- asynchronous answers

// The head is complete and the route has on_head: it may answer now, before
// 100 Continue and before any body byte. Returns false when it did.
bool connection::answer_head(request& req, const route_options& opt, bool has_body)
{
    response& res = srv_.res_;
    res.clear();
    bool answered;
    try {
        answered = opt.on_head(req, res);
    } catch (const std::exception& e) {
        ++srv_.stats_.handler_errors;
        log_error("on_head for " + std::string(req.target_) + " failed: " + e.what());
        internal_error(res);
        answered = true;
    }
    if (!answered)
        return true;
    ++srv_.stats_.requests;
    if (has_body) {
        // The body is not read: the connection cannot be reused.
        closing_ = true;
        linger_ = true;
    }
    final_status(req, res);
    if (!emit(req, res, srv_.out_)) {
        static request_body no_body;
        park(adopt(req, no_body), std::move(res));
    }
    return false;
}

// Hands the request to an asynchronous handler. The request moves into the
// exchange its responder owns, with its head and body copied out of loop
// memory; the connection waits and reads nothing more until the answer.
// The request moves into an exchange, with its head and body copied out of
// loop scratch: it outlives this turn.
std::unique_ptr<exchange> connection::adopt(request& req, request_body& body)
{
    auto ex = std::make_unique<exchange>(*this);
    request& r = ex->req;
    r = std::move(req);
    if (!r.owns_bytes())
        r.own_head(head_length(r.method_.data(), parser().input_end()));
    static const request_body no_body;
    if (body.size_ || body.fd_ >= 0) {
        r.owned_body_ = std::make_unique<request_body>();
        r.owned_body_->take(body);
        r.body_ = r.owned_body_.get();
    } else {
        r.body_ = &no_body;  // most pending requests: no allocation
    }
    assert(request_parser::owns_views(r, r.storage_.get(), r.storage_.get() + r.storage_len_));
    return ex;
}

// A response whose source paused before its first byte waits, with its
// request, until the source resumes; then answer_now() emits it.
void connection::park(std::unique_ptr<exchange> ex, response&& res)
{
    ex->answer = std::make_unique<response>(std::move(res));
    ex_ = ex.release();
    ex_owned_ = true;
    state_ = st_waiting;
    wait_ = wait_none;
}

// The source of the response being written, or of the one parked, resumed.
void connection::source_ready()
{
    if (state_ == st_closed)
        return;
    if (state_ == st_waiting && ex_ && ex_owned_)
        return post<&connection::answer_now>();
    if (fl_ && fl_->kind == flight::body_kind::source && wait_ == wait_on_app)
        pump_soon();
}

void connection::dispatch_async(request& req, request_body& body, std::shared_ptr<body_stream> stream)
{
    std::unique_ptr<exchange> ex = adopt(req, body);
    ex->stream = std::move(stream);
    request& r = ex->req;
    ex_ = ex.get();  // not owned: the responder has it
    ex_owned_ = false;
    state_ = st_waiting;
    if (r.route_options_ && r.route_options_->timeout.count() > 0) {
        exchange* e = ex.get();
        e->deadline.emplace(srv_.ioc_, r.route_options_->timeout);
        add_ref();  // held by the wait; a cancelled wait still runs
        e->deadline->async_wait([this, e](error_code ec) {
            if (!ec)
                handler_timed_out(e);
            release();
        });
    }
    const async_handler& h = *r.async_handler_;  // in the router's node: stable
    try {
        // Dropped without an answer (also when h throws): the responder's
        // destructor answers 500.
        h(responder(std::move(ex)));
    } catch (const std::exception& e) {
        ++srv_.stats_.handler_errors;
        log_error("asynchronous handler failed: " + std::string(e.what()));
    } catch (...) {
        ++srv_.stats_.handler_errors;
        log_error("asynchronous handler failed");
    }
}

// The route's timeout passed with the answer still pending: 504, and the
// handler's operations are cancelled; its late send() gets timed_out.
void connection::handler_timed_out(exchange* e)
{
    const bool streaming = fl_ && fl_->stream;
    if (ex_ != e || ex_owned_ || (state_ != st_waiting && !streaming))
        return;
    conn_ref hold(*this);
    ex_ = nullptr;
    e->gone = async_error::timed_out;
    e->deadline.reset();  // the responder may outlive the io_context: no timer left in it
    try {
        e->cancel.emit(net::cancellation_type::terminal);
    } catch (const std::exception& x) {
        log_error(std::string("cancelling a timed-out handler failed: ") + x.what());
    }
    if (state_ == st_closed || (state_ != st_waiting && !streaming))
        return;  // a cancellation handler closed the connection
    cut_body_stream();
    ++srv_.stats_.handler_errors;
    log_warning("handler for " + std::string(e->req.target_) + " did not answer in time; sent 504");
    state_ = st_reading;
    wait_ = wait_none;
    response& res = srv_.res_;
    res.clear();
    res.status(504);
    res.header("Content-Type", "text/plain; charset=utf-8");
    res.body_ref("Gateway Timeout\n");
    (void)emit(e->req, res, srv_.out_);  // no source: never parks
    flush();
}

void connection::answer(std::unique_ptr<exchange> ex, response&& res)
{
    ex->deadline.reset();  // answered in time
    ex->answer = std::make_unique<response>(std::move(res));
    ex_ = ex.release();  // owned until answer_now()
    ex_owned_ = true;
    // Emitted from the loop's next turn: the caller may be inside another
    // connection's handler, whose output is in the loop's buffer.
    post<&connection::answer_now>();
}

void connection::answer_now()
{
    if (!ex_ || !ex_owned_)
        return;
    conn_ref hold(*this);
    std::unique_ptr<exchange> ex(std::exchange(ex_, nullptr));
    ex_owned_ = false;
    response res = std::move(*ex->answer);
    cut_body_stream();
    state_ = st_reading;
    wait_ = wait_none;
    final_status(ex->req, res);
    if (!emit(ex->req, res, srv_.out_))
        park(std::move(ex), std::move(res));  // resumed too early: wait again
    ex.reset();
    flush();
}

void connection::begin_stream(std::unique_ptr<exchange> ex, response&& head)
{
    flight& f = fl();
    cut_body_stream();
    ex_ = nullptr;
    wait_ = wait_none;
    state_ = st_reading;
    head.clear_body();
    head.kind_ = response::kind::pushed;
    final_status(ex->req, head);
    // Straight into the flight's output, behind what is still unsent: the
    // caller may be inside another connection's handler.
    (void)emit(ex->req, head, f.out);  // a pushed body, no source: never parks
    if (head.kind_ == response::kind::pushed && f.kind != flight::body_kind::pushed)
        start_pushed(false, 0);  // final_status turned it into a 500: drop the writer's bytes
    pump_soon();
}

void connection::push(std::string_view data)
{
    flight& f = *fl_;
    if (f.has_length) {
        if (data.size() > f.left)
            data = data.substr(0, static_cast<std::size_t>(f.left));
        f.left -= data.size();
    }
    if (data.empty())
        return;
    if (f.chunked)
        append_chunk(f.out, data);
    else
        f.out.append(data);
    pump_soon();
}

void connection::end_stream()
{
    flight& f = *fl_;
    f.pushed_end = true;
    if (f.chunked)
        f.out.append("0\r\n\r\n");
    pump_soon();
}

std::size_t connection::buffered() const noexcept
{
    return fl_ ? fl_->out.size() - fl_->out_pos : 0;
}

std::size_t connection::high_water() const noexcept
{
    return srv_.cfg_.block_size;
}

bool connection::stopping() const noexcept
{
    return srv_.stopping_;
}

bool connection::park_write(body_writer::handler_type& h)
{
    flight& f = *fl_;
    if (f.write_done)
        return false;
    // Boost 1.81's any_completion_handler move-assignment recurses for
    // ever (it copies from an lvalue into its own converting constructor):
    // swap instead.
    f.write_done.swap(h);
    return true;
}

void connection::park_finish(body_writer::handler_type h)
{
    fl_->finish_done.swap(h);  // not operator=: see park_write
}

void connection::complete(body_writer::handler_type h, error_code ec)
{
    // One thread runs the loop: the handler's own executor (a coroutine's,
    // a strand's) is this io_context's too.
    net::post(srv_.ioc_, [h = std::move(h), ec]() mutable { std::move(h)(ec); });
}

// The pump runs next turn, once however many writes came meanwhile; when
// the socket is full, the EPOLLOUT edge runs it anyway.
void connection::pump_soon()
{
    flight& f = *fl_;
    if (f.pump_posted || state_ == st_closed)
        return;
    f.pump_posted = true;
    add_ref();
    srv_.queue({this, [](connection* c) {
                               if (c->state_ != st_closed && c->fl_) {
                                   c->fl_->pump_posted = false;
                                   if (c->wait_ != wait_out)
                                       c->pump();
                               }
                               c->release();
                           }});
}

void connection::wait_app()
{
    // Waiting for an answer with nothing in flight: a pending request costs
    // the connection and the responder's exchange, no flight.
    if (state_ == st_waiting && fl_ && fl_->in.empty() && !fl_->parser && fl_->out_pos >= fl_->out.size() &&
        fl_->kind == flight::body_kind::none)
        drop_flight();
    schedule(wait_list::app);
    if (eof_)
        return close();  // the peer left already
    wait_ = wait_on_app;
    watch(false);
}

// The connection closes with an answer pending: tell whoever waits.
void connection::fail_async(async_error why) noexcept
{
    try {
        if (fl_ && fl_->stream)
            end_body_stream(why);
        if (exchange* ex = std::exchange(ex_, nullptr)) {
            if (ex_owned_) {
                delete ex;  // an answer that will not be sent
            } else {
                ex->gone = why;
                ex->cancel.emit(net::cancellation_type::terminal);
            }
            ex_owned_ = false;
        }
        if (!fl_)
            return;
        if (fl_->write_done)
            complete(std::move(fl_->write_done), make_error_code(why));
        if (fl_->finish_done)
            complete(std::move(fl_->finish_done), make_error_code(why));
    } catch (const std::exception& e) {
        log_error(std::string("cancelling an asynchronous handler failed: ") + e.what());
    }
}

}  // namespace fapws::detail

namespace fapws {

void body_source::resume() noexcept
{
    if (!paused_)
        return;
    paused_ = false;
    if (conn_)
        conn_->source_ready();
}

}  // namespace fapws
