// Private: what a responder owns while its answer is pending. Never installed.
#pragma once

#include <fapws/responder.hpp>

#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace fapws::detail {

class connection;

// One request handed to an asynchronous handler. Owned by its responder
// until send()/start_stream() hands it back to the connection, which then
// owns it until the response head is built. The connection only points at
// it (flight::waiting) while it waits, to mark it gone and emit the
// cancellation when the client leaves or the server stops.
struct exchange {
    explicit exchange(connection& c) noexcept;
    ~exchange();  // drops the reference on the connection
    exchange(const exchange&) = delete;
    exchange& operator=(const exchange&) = delete;

    connection* conn;
    request req;  // owns its bytes
    boost::asio::cancellation_signal cancel;
    async_error gone = {};  // set when the answer can no longer be sent
    std::unique_ptr<response> answer;  // set by send(), until it is emitted
    // route_options::timeout, when the route has one.
    std::optional<boost::asio::steady_timer> deadline;
    // route_options::stream_body: the body, until read_body() hands it out.
    std::shared_ptr<body_stream> stream;
};

// A request body streamed to its handler (route_options::stream_body). The
// connection appends what arrives; the body_reader takes it. Shared by both,
// so either may go first; loop thread only.
struct body_stream {
    explicit body_stream(connection& c, boost::asio::io_context::executor_type e) noexcept : conn(&c), ex(e) {}

    connection* conn;  // feeding it; null once it let go (then end or error is set)
    boost::asio::io_context::executor_type ex;
    std::string buf;   // received, not read: [pos, size)
    std::size_t pos = 0;
    bool end = false;  // every byte of the body arrived
    error_code error;  // why no more bytes come, when the body stopped short
    body_reader::handler_type read_done;  // a parked read, and its buffer
    boost::asio::mutable_buffer dst;

    std::size_t available() const noexcept { return buf.size() - pos; }
    // The connection: bytes of the body (a parked read takes what fits).
    void deliver(std::string_view bytes);
    // The connection lets go: the body is complete (why is empty) or cut.
    void stop(error_code why);
    // Runs h on the loop's next turn, never inline.
    void complete(body_reader::handler_type h, error_code ec, std::size_t n);
};

}  // namespace fapws::detail
