// Asynchronous answers: a handler keeps the right to answer one request and
// uses it later, from the loop thread: after a timer, an upstream reply, a
// database row, or a value another thread posted back. Nothing blocks the
// loop meanwhile, and the handler learns when its client leaves.
//
//     srv.route("/slow", [&](fapws::responder r) {
//         auto t = std::make_shared<net::steady_timer>(r.get_executor(), 200ms);
//         t->async_wait(net::bind_cancellation_slot(r.cancellation_slot(),
//             [t, r = std::move(r)](fapws::error_code ec) mutable {
//                 if (ec) return;                       // the client left
//                 fapws::response res;
//                 res.body("done\n");
//                 r.send(std::move(res));
//             }));
//     });
//
// Every member is for the loop thread; other threads post to get_executor().
#pragma once

#include <fapws/http.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>

namespace fapws {

using error_code = boost::system::error_code;

// Why an asynchronous operation did not happen (category "fapws.async").
enum class async_error {
    client_gone = 1,    // the client closed or the connection failed
    already_completed,  // answered (or finished) before
    server_stopping,    // the server stopped before the answer
    busy,               // a write is still pending on this body_writer
    timed_out,          // route_options::timeout passed: the client got 504
    body_refused,       // the request body broke a limit or its framing: the client got 413 or 400
};
const boost::system::error_category& async_category() noexcept;
inline error_code make_error_code(async_error e) noexcept { return {static_cast<int>(e), async_category()}; }

namespace detail {
class connection;
struct exchange;
struct body_stream;
}  // namespace detail

class body_writer;
class body_reader;

// The one-shot right to answer one request. Move-only. It owns its request
// (req() stays valid as long as the responder does) and a reference on the
// connection, so answering after the client left is a harmless error code.
// Destroyed without answering: a 500 and one log line.
class responder {
public:
    using executor_type = boost::asio::io_context::executor_type;

    responder(responder&&) noexcept;
    responder& operator=(responder&&) noexcept;
    ~responder();

    // The request; its views point into bytes it owns.
    const request& req() const noexcept;
    // An owning request to keep (its head copied, its body moved out).
    request take_request();
    executor_type get_executor() const noexcept;
    // Emits terminal cancellation when the client disconnects while the
    // answer is pending, or when the server stops without it.
    boost::asio::cancellation_slot cancellation_slot() noexcept;
    bool client_gone() const noexcept;

    // Sends the response (queued for the loop's next turn, in request order
    // with pipelined requests). Never throws: client_gone,
    // already_completed or server_stopping when it cannot.
    error_code send(response&& res);
    // Answers 500 and logs what `e` holds (a coroutine route's exception).
    void fail(std::exception_ptr e) noexcept;
    // Sends the head now (chunked, or by the Content-Length it declares) and
    // returns the writer of the body. On error the writer is empty.
    body_writer start_stream(response&& head, error_code& ec);
    // For a route with route_options::stream_body: the request body as it
    // arrives (req().body() is then empty). The first call returns it; any
    // other call, or another route, gets an empty reader.
    body_reader read_body() noexcept;

private:
    friend class detail::connection;
    explicit responder(std::unique_ptr<detail::exchange> ex) noexcept;
    std::unique_ptr<detail::exchange> ex_;
};

// The body of a streamed answer. Move-only; holds a reference on the
// connection. Writes are copied at once; a write completes when its bytes
// are written or wait under the high-water mark (config::block_size), so a
// client that does not read holds its producer back, and io_timeout closes
// it. Destroyed before async_finish: the connection is closed (a truncated
// body must not look complete).
class body_writer {
public:
    using executor_type = boost::asio::io_context::executor_type;
    using handler_type = boost::asio::any_completion_handler<void(error_code)>;

    body_writer() noexcept = default;
    body_writer(body_writer&& o) noexcept;
    body_writer& operator=(body_writer&& o) noexcept;
    ~body_writer();

    explicit operator bool() const noexcept { return conn_ != nullptr; }
    bool client_gone() const noexcept;
    // Bytes written by the application and not yet taken by the socket.
    std::size_t buffered() const noexcept;
    executor_type get_executor() const noexcept;

    // Any completion token: a callback, use_awaitable, deferred, use_future.
    template <typename Token>
    auto async_write(std::string_view data, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler, std::string_view d) { initiate_write(d, handler_type(std::move(handler))); },
            token, data);
    }
    // Ends the body (the last chunk, or the declared length reached); the
    // connection then serves its next request. Completes once all is sent.
    template <typename Token>
    auto async_finish(Token&& token)
    {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler) { initiate_finish(handler_type(std::move(handler))); }, token);
    }
    // Closes the connection now.
    void abort() noexcept;

private:
    friend class detail::connection;
    friend class responder;
    explicit body_writer(detail::connection* c) noexcept;
    void initiate_write(std::string_view data, handler_type h);
    void initiate_finish(handler_type h);
    void release() noexcept;
    void post_error(handler_type h, async_error e);
    detail::connection* conn_ = nullptr;
    std::optional<executor_type> ex_;  // kept after the connection is released
    bool finished_ = false;
};

// A request body read as it arrives (route_options::stream_body), with no
// spool file: the connection reads from the socket only while less than
// config::block_size waits here, so a handler that reads slowly holds its
// client back. Move-only; loop thread only. 100 Continue, when asked for,
// goes out once the handler is called.
//
// Answering (send, start_stream) before the body's end is allowed (a 401,
// a 413 of its own): the rest of the body is not read, a later read gets
// async_error::already_completed, and the connection closes after the
// answer.
class body_reader {
public:
    using executor_type = boost::asio::io_context::executor_type;
    using handler_type = boost::asio::any_completion_handler<void(error_code, std::size_t)>;

    body_reader() noexcept = default;
    body_reader(body_reader&&) noexcept = default;
    body_reader& operator=(body_reader&&) noexcept = default;
    ~body_reader() = default;

    explicit operator bool() const noexcept { return s_ != nullptr; }
    // Bytes received and not read yet.
    std::size_t available() const noexcept;
    executor_type get_executor() const noexcept;

    // Reads some bytes into `buf` (at least one, unless buf is empty).
    // Completes with boost::asio::error::eof after the last byte;
    // client_gone when the client left, body_refused when the body broke
    // config::body_limit, route_options::body_limit or its chunked framing
    // (the client got 413 or 400), already_completed after an answer, busy
    // while another read is pending. Any completion token.
    template <typename Token>
    auto async_read_some(boost::asio::mutable_buffer buf, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(error_code, std::size_t)>(
            [this](auto handler, boost::asio::mutable_buffer b) { initiate_read(b, handler_type(std::move(handler))); },
            token, buf);
    }

private:
    friend class responder;
    explicit body_reader(std::shared_ptr<detail::body_stream> s) noexcept : s_(std::move(s)) {}
    void initiate_read(boost::asio::mutable_buffer buf, handler_type h);
    std::shared_ptr<detail::body_stream> s_;
};

}  // namespace fapws

template <>
struct boost::system::is_error_code_enum<fapws::async_error> : std::true_type {};
