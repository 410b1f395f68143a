// Private: one HTTP/1.1 connection, driven by the server's own epoll set. Never
// installed.
#pragma once

#include <fapws/responder.hpp>
#include <fapws/server.hpp>

#include "parser.hpp"
#include "sys.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

namespace fapws {

namespace net = boost::asio;
using error_code = boost::system::error_code;
using executor = net::io_context::executor_type;
using descriptor = net::posix::basic_stream_descriptor<executor>;
using steady_timer = net::basic_waitable_timer<std::chrono::steady_clock,
                                               net::wait_traits<std::chrono::steady_clock>, executor>;

namespace detail {

class connection;
class listener;
struct timer_state;
struct flight;
struct exchange;
struct body_stream;

// Connections waiting on the same timeout, oldest deadline first. Each list
// has one timeout, so appending keeps it sorted; one server timer serves all.
// `app`: waiting on the application (a pending responder, a body_writer
// with nothing to send); it times out only after the 24-day cap, and exists
// so a stop finds those connections too.
enum class wait_list : unsigned char { header = 0, keepalive = 1, io = 2, linger = 3, app = 4, none = 5 };
constexpr std::size_t wait_lists = 5;

struct timeout_list {
    connection* head = nullptr;
    connection* tail = nullptr;
    std::uint32_t timeout_ms = 0;
    std::size_t size = 0;
};

// Milliseconds left before c's deadline on its list; <= 0 when due. Stamps
// wrap every 49 days; timeouts are capped at 24 days so the signed
// difference stays exact.
inline std::int64_t remaining_ms(std::uint32_t enqueued, std::uint32_t timeout, std::uint32_t now) noexcept
{
    return std::int64_t(timeout) - std::int32_t(now - enqueued);
}

// What a failed handler or body answers when its head is not sent yet: the
// one stock 500.
void internal_error(response& res);

// Per-request state kept while a request spans more than one I/O event: a
// partial head or body, a response still being written. Absent while idle.
struct flight;

// Connections live in the server's own epoll set, registered once,
// edge-triggered, for EPOLLIN | EPOLLOUT | EPOLLRDHUP: no system call to wait,
// and the peer's half-close is seen even when it came with the last data.
// (Asio's async_wait re-arms with epoll_ctl on every wait; a reactor
// operation cannot see EPOLLRDHUP.) The loop polls that set beside the
// io_context and blocks in the io_context, where the set is one descriptor.
//
// The portable build (-Dreactor=asio, detail/sys.hpp) keeps the same
// remembered readiness, but each wait is one Asio async_wait on the
// connection's descriptor (watch()), armed only when the connection waits
// and the flag says nothing is there: level-triggered waits then behave as
// the edges above. While the application works, a read wait watches for the
// peer leaving; data pipelined meanwhile ends that watch (the disconnect is
// then seen at the next read), where epoll's EPOLLRDHUP would still see it.
class connection final {
public:
    connection(server::impl& srv, int fd, const listener_info& where,
               std::uint32_t peer_v4, std::uint16_t peer_port);
    ~connection();

    void start();
    // Closes now and drops the reference the registration held.
    void close() noexcept;
    // The server's epoll set reported these events for this connection.
    void on_event(std::uint32_t events);
    // Graceful stop: close if idle, otherwise finish the current response
    // and close after it.
    void drain() noexcept;
    bool idle() const noexcept;

    // Intrusive reference count: the epoll registration, queued actions and
    // the call stack hold one each.
    void add_ref() noexcept { ++refs_; }
    void release() noexcept
    {
        if (--refs_ == 0)
            delete this;
    }

    void on_timeout() noexcept;

    // The asynchronous side (responder.cpp); loop thread only.
    // A responder answers: queued for the next turn, in request order.
    void answer(std::unique_ptr<exchange> ex, response&& res);
    // A responder starts a streamed body: the head goes out now.
    void begin_stream(std::unique_ptr<exchange> ex, response&& head);
    // A body_writer's bytes, framed and queued; the pump runs next turn.
    void push(std::string_view data);
    void end_stream();
    // A paused body_source resumed (body_source::resume).
    void source_ready();
    std::size_t buffered() const noexcept;
    bool gone() const noexcept { return state_ == st_closed_v; }
    bool stopping() const noexcept;
    // Parks the body_writer's handler until the bytes are under the
    // high-water mark (write) or all sent (finish); false if one is parked.
    bool park_write(body_writer::handler_type& h);
    void park_finish(body_writer::handler_type h);
    // Runs a completion handler on its executor, never inline.
    void complete(body_writer::handler_type h, error_code ec);
    std::size_t high_water() const noexcept;
    // A body_reader took bytes (route_options::stream_body).
    void reader_drained();
    server::impl& owner() const noexcept { return srv_; }
    // config::busy_release (busy_watch.cpp, its thread, under the
    // keep-alive list's mutex): this idle connection got a FIN; it closes on
    // its next event without reading.
    int socket() const noexcept { return fd_; }
    bool released() const noexcept { return released_.load(std::memory_order_relaxed); }
    void release_idle() noexcept { released_.store(true, std::memory_order_relaxed); }
    static constexpr std::uint8_t st_closed_v = 3;

private:
    void watch(bool write);
    void wait_read();
    void wait_write();
    void readable();
    void do_read();
    // Parses and answers what [p, p+n) holds; returns the bytes used.
    std::size_t consume(const char* p, std::size_t n);
    void consume_stashed();
    void keep_input(const char* p, std::size_t n);
    int read_proxy(const char*& p, std::size_t& n);
    bool start_head(const char*& p, std::size_t& n, std::size_t& from);
    bool bounded_stall(const char* p, std::size_t n, std::size_t& from);
    void refuse(beast_error ec, const char* start, std::size_t n);
    bool too_slow();
    void stash_request(const char* end);
    bool begin_body();
    void dispatch();
    void dispatch_async(request& req, request_body& body, std::shared_ptr<body_stream> stream = {});
    bool streams_body(const request_parser& ps) const noexcept;
    void start_body_stream(const char* end, bool done);
    void cut_body_stream() noexcept;
    void end_body_stream(error_code why) noexcept;
    std::unique_ptr<exchange> adopt(request& req, request_body& body);
    void park(std::unique_ptr<exchange> ex, response&& res);
    bool paused_body() const noexcept;
    void final_status(const request& req, response& res);
    void answer_now();
    void handler_timed_out(exchange* e);
    void wait_app();
    void fail_async(async_error why) noexcept;
    void pump_soon();
    void start_pushed(bool chunked, std::optional<std::uint64_t> length);
    bool answer_head(request& req, const route_options& opt, bool has_body);
    [[nodiscard]] bool emit(request& req, response& res, std::string& out);
    void answer_error(int status, std::string_view fields = {});
    void flush();
    void proceed();
    void pump();
    void resume();
    void linger();
    template <void (connection::*Fn)()>
    void post();
    static void append(void* self, std::string_view bytes, beast_error& ec);
    flight& fl();
    void drop_flight() noexcept;
    request_parser& parser();
    void reset_parser();
    void schedule(wait_list l);

    server::impl& srv_;
    std::unique_ptr<flight> fl_;
    const listener_info* where_;

public:
    // The timeout list hooks, managed by server::impl.
    connection* prev_ = nullptr;
    connection* next_ = nullptr;

public:
    std::uint32_t enqueued_ = 0;  // now_ms() when put on its list, modulo 2^32
    wait_list list_ = wait_list::none;

private:
    // The asynchronous handler's exchange: the responder's while the answer
    // is pending (then ex_owned_ is false), ours once send() handed it back.
    exchange* ex_ = nullptr;
    int fd_;
    std::uint32_t peer_v4_;
    std::uint16_t peer_port_;
    std::uint16_t refs_ = 0;
    std::uint8_t state_ = 0;
    bool ex_owned_ = false;
    bool closing_ = false;        // close after the current response
    bool draining_ = false;       // graceful stop: close once idle
    bool linger_ = false;         // unread input may remain: drain before close
    bool spool_failed_ = false;   // the body could not be spooled: 500, not 413
    bool proxy_pending_ = false;  // a PROXY protocol header comes first
    std::atomic<bool> released_{false};  // busy_watch gave this idle connection a FIN
    bool peer_is_v6_ = false;     // the PROXY header named an IPv6 client
    unsigned char peer_v6_[16] = {};
    // Edge-triggered readiness, remembered until a system call says otherwise.
    bool readable_ = false;  // recv may return data or EOF
    bool writable_ = false;  // send may take bytes
    bool eof_ = false;       // the peer half-closed (or the socket failed)
    std::uint8_t wait_ = 0;  // what the connection waits for: none, read, write
#if !FAPWS_REACTOR_EPOLL
    std::uint8_t armed_ = 0;  // Asio waits pending: 1 read, 2 write
    std::unique_ptr<descriptor> sock_;
#endif
};

}  // namespace detail

}  // namespace fapws
