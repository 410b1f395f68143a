#include <fapws/http.hpp>

#include <boost/beast/core/string.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <new>
#include <utility>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace fapws {

namespace {

// RFC 9110 section 5.6.2: tchar, as a table (response::header checks every
// name byte of every response).
constexpr auto tchar_table = [] {
    std::array<bool, 256> t{};
    for (int c = 'a'; c <= 'z'; ++c)
        t[c] = t[c - 'a' + 'A'] = true;
    for (int c = '0'; c <= '9'; ++c)
        t[c] = true;
    for (unsigned char c : std::string_view("!#$%&'*+-.^_`|~"))
        t[c] = true;
    return t;
}();

bool is_tchar(unsigned char c) noexcept
{
    return tchar_table[c];
}

bool iequals(std::string_view a, std::string_view b) noexcept
{
    return boost::beast::iequals(a, b);
}

// s against a lower-case literal of letters and '-', any case, for a
// caller that checked the length already. OR-ing 0x20 folds A-Z onto a-z
// and maps nothing else onto a letter; onto '-' only CR, which no header
// name holds (names are tokens, checked first). Runs for every header of
// every response, so no table lookups.
template <std::size_t N>
bool is_named(std::string_view s, const char (&lower)[N]) noexcept
{
    for (std::size_t i = 0; i + 1 < N; ++i)
        if ((static_cast<unsigned char>(s[i]) | 0x20) != static_cast<unsigned char>(lower[i]))
            return false;
    return true;
}

int hexval(char c) noexcept
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

}  // namespace

std::string percent_decode(std::string_view raw)
{
    std::string out;
    out.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
        int h, l;
        if (raw[i] == '%' && i + 2 < raw.size() && (h = hexval(raw[i + 1])) >= 0 && (l = hexval(raw[i + 2])) >= 0) {
            out.push_back(static_cast<char>(h * 16 + l));
            i += 2;
        } else {
            out.push_back(raw[i]);
        }
    }
    return out;
}

request_body::~request_body()
{
    reset();
}

void request_body::reset() noexcept
{
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = -1;
    size_ = 0;
    view_ = {};
    mem_.clear();
    if (mem_.capacity() > 64 * 1024)
        mem_.shrink_to_fit();
}

void request_body::take(request_body& b)
{
    reset();
    size_ = b.size_;
    fd_ = std::exchange(b.fd_, -1);
    if (b.view_.data() && b.view_.data() != b.mem_.data())
        mem_.assign(b.view_);  // borrowed from a read buffer: copy
    else
        mem_ = std::move(b.mem_);
    view_ = mem_;
    b.reset();
}

request::~request() = default;

void request::own_head(std::size_t head_len)
{
    const char* from = method_.data();
    auto fresh = std::make_unique<char[]>(head_len);
    std::memcpy(fresh.get(), from, head_len);
    const char* to = fresh.get();
    auto rebase = [&](std::string_view v) {
        // Views outside the head are the parser's static literals: kept.
        if (v.data() < from || v.data() + v.size() > from + head_len)
            return v;
        return std::string_view(to + (v.data() - from), v.size());
    };
    for (auto* v : {&method_, &target_, &path_, &query_})
        *v = rebase(*v);
    for (auto& f : fields_) {
        f.name = rebase(f.name);
        f.value = rebase(f.value);
    }
    storage_ = std::move(fresh);
    storage_len_ = head_len;
}

request request::take()
{
    if (!storage_)
        throw std::logic_error("request::take() needs a request that owns its bytes");
    request r;
    r.method_ = method_;
    r.target_ = target_;
    r.path_ = path_;
    r.query_ = query_;
    r.mount_len_ = mount_len_;
    r.fields_ = fields_;
    r.listener_ = listener_;
    r.version_ = version_;
    r.fd_ = fd_;
    r.peer_v4_ = peer_v4_;
    r.peer_port_ = peer_port_;
    r.peer_is_v6_ = peer_is_v6_;
    r.started_us_ = started_us_;
    std::memcpy(r.peer_v6_, peer_v6_, sizeof peer_v6_);
    r.head_ = head_;
    r.keep_alive_ = keep_alive_;
    r.own_head(storage_len_);
    r.owned_body_ = std::make_unique<request_body>();
    if (owned_body_)
        r.owned_body_->take(*owned_body_);
    r.body_ = r.owned_body_.get();
    return r;
}

std::size_t request_body::read_at(std::uint64_t offset, char* dst, std::size_t n) const
{
    if (offset >= size_)
        return 0;
    n = static_cast<std::size_t>(std::min<std::uint64_t>(n, size_ - offset));
    if (fd_ < 0) {
        view_.copy(dst, n, static_cast<std::size_t>(offset));
        return n;
    }
    std::size_t done = 0;
    while (done < n) {
        ssize_t r = ::pread(fd_, dst + done, n - done, static_cast<off_t>(offset + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            throw std::system_error(errno, std::generic_category(), "reading the request body");
        }
        if (r == 0)
            break;
        done += static_cast<std::size_t>(r);
    }
    return done;
}

std::string_view request::header(std::string_view name) const noexcept
{
    for (const auto& f : fields_)
        if (iequals(f.name, name))
            return f.value;
    return {};
}

bool request::has_header(std::string_view name) const noexcept
{
    for (const auto& f : fields_)
        if (iequals(f.name, name))
            return true;
    return false;
}

std::string request::remote_addr() const
{
    char buf[INET6_ADDRSTRLEN] = "";
    if (peer_is_v6_) {
        ::inet_ntop(AF_INET6, peer_v6_, buf, sizeof buf);
        return buf;
    }
    if (peer_port_ != 0) {
        // inet_ntop formats with sprintf: a tenth of a WSGI hello's own
        // instructions. Dotted quad by hand.
        const auto* b = reinterpret_cast<const unsigned char*>(&peer_v4_);
        char* p = buf;
        for (int i = 0; i < 4; ++i) {
            unsigned v = b[i];
            if (v >= 100)
                *p++ = static_cast<char>('0' + v / 100);
            if (v >= 10)
                *p++ = static_cast<char>('0' + v / 10 % 10);
            *p++ = static_cast<char>('0' + v % 10);
            *p++ = '.';
        }
        return std::string(buf, static_cast<std::size_t>(p - buf - 1));
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (fd_ < 0 || ::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
        return {};
    if (ss.ss_family == AF_INET6)
        ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6&>(ss).sin6_addr, buf, sizeof buf);
    else if (ss.ss_family == AF_INET)
        ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
    return buf;
}

std::uint16_t request::remote_port() const
{
    if (peer_port_ != 0)
        return peer_port_;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (fd_ < 0 || ::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(reinterpret_cast<sockaddr_in6&>(ss).sin6_port);
    if (ss.ss_family == AF_INET)
        return ntohs(reinterpret_cast<sockaddr_in&>(ss).sin_port);
    return 0;
}

void response::status(int code)
{
    if (code < 100 || code > 999)
        throw std::invalid_argument("status code out of range: " + std::to_string(code));
    status_ = code;
    reason_.clear();
}

void response::status(int code, std::string_view reason)
{
    status(code);
    for (unsigned char c : reason)
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            throw std::invalid_argument("control character in reason phrase");
    reason_.assign(reason);
}

void response::header(std::string_view name, std::string_view value)
{
    if (name.empty())
        throw std::invalid_argument("empty header name");
    bool bad = false;
    for (unsigned char c : name)
        bad |= !is_tchar(c);
    if (bad)
        throw std::invalid_argument("invalid header name: " + std::string(name));
    for (unsigned char c : value)
        bad |= (c < 0x20 && c != '\t') | (c == 0x7f);
    if (bad)
        throw std::invalid_argument("control character in value of header " + std::string(name));
    // Hop-by-hop framing is the server's business. Names are told apart by
    // length first: this runs for every header of every response.
    switch (name.size()) {
    case 14:
        if (is_named(name, "content-length")) {
            std::uint64_t n = 0;
            auto r = std::from_chars(value.data(), value.data() + value.size(), n);
            if (r.ec != std::errc() || r.ptr != value.data() + value.size())
                throw std::invalid_argument("invalid Content-Length: " + std::string(value));
            content_length_ = n;
            return;
        }
        break;
    case 17:
        if (is_named(name, "transfer-encoding"))
            return;
        break;
    case 10:
        if (is_named(name, "connection")) {
            if (value.size() == 5 && is_named(value, "close"))
                close_ = true;
            return;
        }
        break;
    case 6:
        if (is_named(name, "server"))
            has_server_ = true;
        break;
    case 4:
        if (is_named(name, "date"))
            has_date_ = true;
        break;
    default:
        break;
    }
    std::size_t at = fields_.size();
    fields_.resize(at + name.size() + value.size() + 4);
    char* p = fields_.data() + at;
    std::memcpy(p, name.data(), name.size());
    p += name.size();
    *p++ = ':';
    *p++ = ' ';
    std::memcpy(p, value.data(), value.size());
    p += value.size();
    *p++ = '\r';
    *p = '\n';
}

void response::body(std::string data)
{
    source_.reset();
    kind_ = kind::owned;
    owned_ = std::move(data);
}

void response::body_ref(std::string_view data)
{
    source_.reset();
    kind_ = kind::borrowed;
    borrowed_ = data;
}

void response::file(int fd, std::uint64_t offset, std::uint64_t length)
{
    source_.reset();
    if (file_fd_ >= 0 && file_fd_ != fd && file_owned_)
        ::close(file_fd_);
    kind_ = kind::file;
    file_fd_ = fd;
    file_owned_ = true;
    file_offset_ = offset;
    file_length_ = length;
}

void response::file(int fd, std::uint64_t offset, std::uint64_t length, std::shared_ptr<const void> owner)
{
    file(-1, offset, length);
    file_fd_ = fd;
    file_owned_ = false;
    holds_.push_back(std::move(owner));
}

void response::stream(std::unique_ptr<body_source> source)
{
    if (!source)
        throw std::invalid_argument("null body source");
    kind_ = kind::stream;
    source_ = std::move(source);
}

response::response(response&& o) noexcept
    : status_(o.status_),
      reason_(std::move(o.reason_)),
      fields_(std::move(o.fields_)),
      content_length_(o.content_length_),
      kind_(o.kind_),
      close_(o.close_),
      has_server_(o.has_server_),
      has_date_(o.has_date_),
      owned_(std::move(o.owned_)),
      borrowed_(o.borrowed_),
      file_fd_(std::exchange(o.file_fd_, -1)),
      file_owned_(o.file_owned_),
      file_offset_(o.file_offset_),
      file_length_(o.file_length_),
      source_(std::move(o.source_)),
      holds_(std::move(o.holds_))
{
    o.kind_ = kind::none;
}

response& response::operator=(response&& o) noexcept
{
    if (this != &o) {
        this->~response();
        new (this) response(std::move(o));
    }
    return *this;
}

response::~response()
{
    if (file_fd_ >= 0 && file_owned_)
        ::close(file_fd_);
}

void response::clear_headers() noexcept
{
    status_ = 200;
    reason_.clear();
    fields_.clear();
    content_length_.reset();
    close_ = false;
    has_server_ = false;
    has_date_ = false;
}

void response::clear_body() noexcept
{
    kind_ = kind::none;
    owned_.clear();
    borrowed_ = {};
    if (file_fd_ >= 0 && file_owned_)
        ::close(file_fd_);
    file_fd_ = -1;
    source_.reset();
}

void response::clear()
{
    status_ = 200;
    reason_.clear();
    fields_.clear();
    content_length_.reset();
    kind_ = kind::none;
    close_ = false;
    has_server_ = false;
    has_date_ = false;
    owned_.clear();
    if (owned_.capacity() > 64 * 1024)
        owned_.shrink_to_fit();
    borrowed_ = {};
    if (file_fd_ >= 0 && file_owned_)
        ::close(file_fd_);
    file_fd_ = -1;
    file_owned_ = true;
    file_offset_ = file_length_ = 0;
    source_.reset();
    holds_.clear();
}

std::string_view reason_phrase(int status) noexcept
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

}  // namespace fapws
