// What a handler sees and produces. A synchronous handler runs on the loop
// thread, between two I/O events; the request's string_views are valid until
// it returns. An asynchronous handler (responder.hpp) gets a request that
// owns its bytes: its views live as long as it does.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fapws {

namespace detail {
class connection;
class request_parser;
}  // namespace detail

class request;
class response;
class responder;
struct route_options;
// A handler answers one request, synchronously. It may throw: before the
// response head is sent that becomes a 500 and the server goes on.
using handler = std::function<void(const request&, response&)>;
// An asynchronous handler: it keeps the responder and answers through it
// later, from the loop thread (responder.hpp).
using async_handler = std::function<void(responder)>;

// Where a request came in: set per listener.
struct listener_info {
    std::string address;       // "127.0.0.1", "::1", "unix:/run/x.sock", "fd:3"
    std::uint16_t port = 0;    // 0 for UNIX sockets
    std::string url_scheme = "http";
    bool unix_socket = false;
    bool proxy_protocol = false;  // connections start with a PROXY header
};

// The complete request body, read before the handler is called. Small bodies
// live in memory; larger ones in an unlinked temporary file.
class request_body {
public:
    request_body() = default;
    request_body(const request_body&) = delete;
    request_body& operator=(const request_body&) = delete;
    ~request_body();

    std::uint64_t size() const noexcept { return size_; }
    bool in_memory() const noexcept { return fd_ < 0; }
    // The bytes, when in_memory().
    std::string_view data() const noexcept { return view_; }
    // The spool file, when !in_memory(); owned by the body.
    int fd() const noexcept { return fd_; }
    // Copies up to n bytes from offset; returns the count (0 at the end).
    // Throws std::system_error if the spool file cannot be read.
    std::size_t read_at(std::uint64_t offset, char* dst, std::size_t n) const;

private:
    friend class detail::connection;
    friend class request;
    void reset() noexcept;
    // Takes b's bytes (copying a borrowed view); b is left empty.
    void take(request_body& b);
    std::string_view view_;  // into mem_ or the connection's read buffer
    std::string mem_;
    int fd_ = -1;
    std::uint64_t size_ = 0;
};

class request {
public:
    struct field {
        std::string_view name;
        std::string_view value;
    };

    request() = default;
    // Move-only: a copy would keep views into bytes it does not own (a
    // request copied out of a handler showed another client's bytes).
    request(const request&) = delete;
    request& operator=(const request&) = delete;
    request(request&&) noexcept = default;
    request& operator=(request&&) noexcept = default;
    ~request();

    // Whether the views point into bytes this request holds (true for the
    // request of an asynchronous handler): then they live as long as it does.
    bool owns_bytes() const noexcept { return storage_ != nullptr; }
    // An owning copy of the head, with the body moved into it (this request
    // keeps its head and an empty body). For a coroutine that takes the
    // request by value.
    request take();

    std::string_view method() const noexcept { return method_; }
    // The request-target as received: "/a%20b?x=1".
    std::string_view target() const noexcept { return target_; }
    // The target's path, still percent-encoded, without the query.
    std::string_view path() const noexcept { return path_; }
    std::string_view query() const noexcept { return query_; }
    // The mount prefix that matched (raw), and the rest of the path (raw).
    std::string_view script_name() const noexcept { return path_.substr(0, mount_len_); }
    std::string_view path_info() const noexcept { return path_.substr(mount_len_); }
    int version() const noexcept { return version_; }  // 10 or 11
    bool is_head() const noexcept { return head_; }
    bool keep_alive() const noexcept { return keep_alive_; }

    // Header lines in arrival order; names as the client spelled them.
    const std::vector<field>& fields() const noexcept { return fields_; }
    // The first header with this name (ASCII case-insensitive), or empty.
    std::string_view header(std::string_view name) const noexcept;
    bool has_header(std::string_view name) const noexcept;

    const request_body& body() const noexcept { return *body_; }
    const listener_info& listener() const noexcept { return *listener_; }
    // The peer: "192.0.2.1" and its port; for UNIX sockets, "" and 0.
    std::string remote_addr() const;
    std::uint16_t remote_port() const;

private:
    friend class detail::connection;
    friend class detail::request_parser;
    // Copies the head the views point into (it starts at method_ and is
    // head_len bytes) into storage_ and points the views there.
    void own_head(std::size_t head_len);
    std::string_view method_, target_, path_, query_;
    std::size_t mount_len_ = 0;
    std::vector<field> fields_;
    const request_body* body_ = nullptr;
    const handler* handler_ = nullptr;
    const async_handler* async_handler_ = nullptr;
    const route_options* route_options_ = nullptr;
    std::unique_ptr<char[]> storage_;           // the head, when owned
    std::size_t storage_len_ = 0;
    std::unique_ptr<request_body> owned_body_;  // the body, when owned
    const listener_info* listener_ = nullptr;
    int version_ = 11;
    int fd_ = -1;
    std::uint32_t peer_v4_ = 0;  // network order; valid when peer_port_ != 0
    std::uint16_t peer_port_ = 0;
    bool peer_is_v6_ = false;    // an IPv6 client a PROXY header named
    unsigned char peer_v6_[16] = {};
    std::int64_t started_us_ = 0;  // head complete (set when an access log wants durations)
    bool head_ = false;
    bool keep_alive_ = true;
};

// A response body produced one block at a time, pulled by the connection
// after the previous block was written. Owned by the response; destroyed on
// the loop thread when the response ends, is cut, or the client goes away.
class body_source {
public:
    virtual ~body_source() = default;
    // Sets `block` to the next bytes (valid until the next call or the
    // destructor) and returns true, or returns false at the end. An empty
    // block is allowed and skipped. An exception aborts the response: the
    // connection is closed.
    virtual bool next(std::string_view& block) = 0;
    // The body length when known up front (sent as Content-Length).
    virtual std::optional<std::uint64_t> size() const { return std::nullopt; }
    // By default every block is handed to the socket before the next one is
    // pulled, and the head leaves with the first non-empty block: a block is
    // never held back while the source produces the next (PEP 3333's rule,
    // and what a slow or pushed source needs). A source whose blocks are
    // already in hand (a list) may return true: the server then joins blocks
    // up to config::block_size per write, and pulls up to 16 KiB before the
    // head so that a short body gets a Content-Length.
    virtual bool gathers() const { return false; }
    // Called once, right before the response head is written (after the
    // first block was pulled, or the end was seen): the source may still
    // change the status and headers (a WSGI application may change its mind
    // with start_response(..., exc_info) until then). The body must stay.
    virtual void before_head(response&) {}

    // Loop thread: the source has more to give (or its end) after it
    // paused. The connection pulls again on the loop's next turn. Harmless
    // when not paused, or before the response was handed to the server.
    void resume() noexcept;
    bool paused() const noexcept { return paused_; }

protected:
    // Called from next(), which then returns true with an empty block:
    // nothing is ready yet. The connection stops pulling and costs no CPU
    // until resume(); it still notices the client leaving (the source is
    // then destroyed). Paused before the first byte, the response head
    // waits too: a source that ends without a byte gets Content-Length: 0.
    void pause() noexcept { paused_ = true; }

private:
    friend class detail::connection;
    detail::connection* conn_ = nullptr;  // set when the connection first pulls
    bool paused_ = false;
};

class response {
public:
    response() = default;
    response(const response&) = delete;
    response& operator=(const response&) = delete;
    // Movable: an asynchronous handler builds one and hands it to
    // responder::send.
    response(response&& o) noexcept;
    response& operator=(response&& o) noexcept;
    ~response();  // closes a file it owns

    // 100..999. The reason phrase defaults to the RFC 9110 one.
    void status(int code);
    void status(int code, std::string_view reason);
    int status() const noexcept { return status_; }

    // Adds a header line. Throws std::invalid_argument when the name is not
    // an RFC 9110 token or the value holds CR, LF, NUL or other controls
    // (response splitting). Content-Length and Connection are understood;
    // Transfer-Encoding, Date and Server are managed by the server.
    void header(std::string_view name, std::string_view value);

    // The whole body, owned.
    void body(std::string data);
    // The whole body, borrowed: `data` must stay valid until the response is
    // written, e.g. a string literal or memory kept by `hold`.
    void body_ref(std::string_view data);
    // A file range, sent with sendfile(2). The response owns fd and closes it.
    void file(int fd, std::uint64_t offset, std::uint64_t length);
    // The same for a descriptor kept open by `owner` (an open-file cache):
    // not closed; owner is held until the response is done.
    void file(int fd, std::uint64_t offset, std::uint64_t length, std::shared_ptr<const void> owner);
    // A pull-based body; its size(), when known, becomes Content-Length.
    void stream(std::unique_ptr<body_source> source);
    // Keeps an object alive until the response is done (for body_ref).
    void hold(std::shared_ptr<const void> owner) { holds_.push_back(std::move(owner)); }

    // Close the connection after this response.
    void close() noexcept { close_ = true; }

    void clear();
    // Back to a bare 200 without headers; the body stays.
    void clear_headers() noexcept;

private:
    friend class detail::connection;
    void clear_body() noexcept;  // keeps status and fields
    enum class kind : unsigned char { none, owned, borrowed, file, stream, pushed };

    int status_ = 200;
    std::string reason_;             // empty: the standard one
    std::string fields_;             // serialized "Name: value\r\n" lines
    std::optional<std::uint64_t> content_length_;
    kind kind_ = kind::none;
    bool close_ = false;
    bool has_server_ = false;
    bool has_date_ = false;
    std::string owned_;
    std::string_view borrowed_;
    int file_fd_ = -1;
    bool file_owned_ = true;
    std::uint64_t file_offset_ = 0;
    std::uint64_t file_length_ = 0;
    std::unique_ptr<body_source> source_;
    std::vector<std::shared_ptr<const void>> holds_;
};

// Decodes %XX escapes once; a '%' not followed by two hex digits is kept.
std::string percent_decode(std::string_view raw);

// The reason phrase of a status code ("Not Found"), or "Unknown".
std::string_view reason_phrase(int status) noexcept;

}  // namespace fapws
