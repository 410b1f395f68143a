// The asynchronous API's handles: responder and body_writer. Each holds a
// reference on its connection, so a late answer finds the connection (maybe
// closed) rather than freed memory.
#include <fapws/responder.hpp>

#include "detail/connection.hpp"
#include "detail/exchange.hpp"
#include "detail/server_impl.hpp"

#include <fapws/log.hpp>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>

namespace fapws {

namespace {

class async_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "fapws.async"; }
    std::string message(int ev) const override
    {
        switch (static_cast<async_error>(ev)) {
        case async_error::client_gone: return "the client is gone";
        case async_error::already_completed: return "already answered or finished";
        case async_error::server_stopping: return "the server is stopping";
        case async_error::busy: return "a write is still pending";
        case async_error::timed_out: return "the handler's time to answer passed (504 sent)";
        case async_error::body_refused: return "the request body was refused (413 or 400 sent)";
        }
        return "unknown fapws.async error";
    }
};

}  // namespace

const boost::system::error_category& async_category() noexcept
{
    static const async_category_impl cat;
    return cat;
}

namespace detail {

exchange::exchange(connection& c) noexcept : conn(&c)
{
    c.add_ref();
}

exchange::~exchange()
{
    conn->release();
}

void body_stream::complete(body_reader::handler_type h, error_code ec, std::size_t n)
{
    boost::asio::post(ex, [h = std::move(h), ec, n]() mutable { std::move(h)(ec, n); });
}

void body_stream::deliver(std::string_view bytes)
{
    if (read_done) {
        // Nothing waits in buf while a read is parked: straight to its buffer.
        std::size_t k = std::min(bytes.size(), dst.size());
        std::memcpy(dst.data(), bytes.data(), k);
        bytes.remove_prefix(k);
        complete(std::move(read_done), {}, k);
    }
    if (bytes.empty())
        return;
    // Drop what was read, so buf holds about what waits (under the
    // connection's high-water mark plus a read), not the whole body: a
    // reader that never quite catches up would otherwise keep every byte.
    if (pos == buf.size()) {
        buf.clear();
        pos = 0;
    } else if (pos >= buf.size() / 2) {
        buf.erase(0, pos);  // moves at most what was read: amortised
        pos = 0;
    }
    buf.append(bytes);
}

void body_stream::stop(error_code why)
{
    conn = nullptr;
    if (why)
        error = why;
    else
        end = true;
    if (read_done)
        complete(std::move(read_done), why ? why : error_code(boost::asio::error::eof), 0);
}

}  // namespace detail

// ---------------------------------------------------------------- responder

responder::responder(std::unique_ptr<detail::exchange> ex) noexcept : ex_(std::move(ex)) {}

responder::responder(responder&&) noexcept = default;

responder& responder::operator=(responder&& o) noexcept
{
    if (this != &o) {
        this->~responder();
        new (this) responder(std::move(o));
    }
    return *this;
}

responder::~responder()
{
    if (!ex_ || ex_->gone != async_error{})
        return;
    log_error("responder for " + std::string(ex_->req.target()) + " dropped without an answer; sent 500");
    response res;
    detail::internal_error(res);
    send(std::move(res));
}

const request& responder::req() const noexcept
{
    return ex_->req;
}

request responder::take_request()
{
    return ex_->req.take();
}

responder::executor_type responder::get_executor() const noexcept
{
    return ex_->conn->owner().ioc_.get_executor();
}

boost::asio::cancellation_slot responder::cancellation_slot() noexcept
{
    return ex_ ? ex_->cancel.slot() : boost::asio::cancellation_slot();
}

bool responder::client_gone() const noexcept
{
    return !ex_ || ex_->gone != async_error{};
}

error_code responder::send(response&& res)
{
    if (!ex_)
        return async_error::already_completed;
    if (ex_->gone != async_error{}) {
        error_code ec = ex_->gone;
        ex_.reset();
        return ec;
    }
    detail::connection* c = ex_->conn;
    c->answer(std::move(ex_), std::move(res));
    return {};
}

void responder::fail(std::exception_ptr e) noexcept
{
    std::string what = "unknown exception";
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        what = x.what();
    } catch (...) {
    }
    if (!ex_)
        return;
    ++ex_->conn->owner().stats_.handler_errors;
    log_error("handler for " + std::string(ex_->req.target()) + " failed: " + what);
    try {
        response res;
        detail::internal_error(res);
        send(std::move(res));
    } catch (...) {
        ex_.reset();
    }
}

body_writer responder::start_stream(response&& head, error_code& ec)
{
    ec = {};
    if (!ex_) {
        ec = async_error::already_completed;
        return {};
    }
    if (ex_->gone != async_error{}) {
        ec = ex_->gone;
        ex_.reset();
        return {};
    }
    detail::connection* c = ex_->conn;
    body_writer w(c);
    c->begin_stream(std::move(ex_), std::move(head));
    return w;
}

body_reader responder::read_body() noexcept
{
    if (!ex_)
        return {};
    return body_reader(std::move(ex_->stream));
}

// ---------------------------------------------------------------- body_reader

std::size_t body_reader::available() const noexcept
{
    return s_ ? s_->available() : 0;
}

body_reader::executor_type body_reader::get_executor() const noexcept
{
    return s_->ex;
}

void body_reader::initiate_read(boost::asio::mutable_buffer buf, handler_type h)
{
    if (!s_) {
        log_error("body_reader::async_read_some on an empty reader");
        return;
    }
    detail::body_stream& s = *s_;
    if (s.read_done)
        return s.complete(std::move(h), async_error::busy, 0);
    if (s.available() > 0 || buf.size() == 0) {
        std::size_t k = std::min(s.available(), buf.size());
        std::memcpy(buf.data(), s.buf.data() + s.pos, k);
        s.pos += k;
        s.complete(std::move(h), {}, k);
        if (s.conn)
            s.conn->reader_drained();  // the connection may read again
        return;
    }
    if (s.end)
        return s.complete(std::move(h), boost::asio::error::eof, 0);
    if (s.error)
        return s.complete(std::move(h), s.error, 0);
    s.read_done.swap(h);  // not operator=: see connection::park_write
    s.dst = buf;
}

// ---------------------------------------------------------------- body_writer

body_writer::body_writer(detail::connection* c) noexcept : conn_(c), ex_(c->owner().ioc_.get_executor())
{
    conn_->add_ref();
}

body_writer::body_writer(body_writer&& o) noexcept
    : conn_(std::exchange(o.conn_, nullptr)), ex_(o.ex_), finished_(o.finished_)
{
}

body_writer& body_writer::operator=(body_writer&& o) noexcept
{
    if (this != &o) {
        this->~body_writer();
        new (this) body_writer(std::move(o));
    }
    return *this;
}

body_writer::~body_writer()
{
    if (conn_ && !finished_) {
        // A body cut short must not look complete: close.
        if (!conn_->gone())
            log_warning("body_writer dropped before async_finish; connection closed");
        conn_->close();
    }
    release();
}

void body_writer::release() noexcept
{
    if (conn_)
        std::exchange(conn_, nullptr)->release();
}

bool body_writer::client_gone() const noexcept
{
    return !conn_ || conn_->gone();
}

std::size_t body_writer::buffered() const noexcept
{
    return conn_ && !conn_->gone() ? conn_->buffered() : 0;
}

body_writer::executor_type body_writer::get_executor() const noexcept
{
    return *ex_;
}

namespace {

error_code gone_reason(const detail::connection& c)
{
    return c.stopping() ? async_error::server_stopping : async_error::client_gone;
}

}  // namespace

// Completes on the loop's next turn, never inline: the caller's stack may
// hold what the handler touches.
void body_writer::post_error(handler_type h, async_error e)
{
    if (!ex_) {
        log_error("body_writer used after it was moved from");
        return;
    }
    boost::asio::post(*ex_, [h = std::move(h), e]() mutable { std::move(h)(make_error_code(e)); });
}

void body_writer::initiate_write(std::string_view data, handler_type h)
{
    if (!conn_ || finished_) {
        return post_error(std::move(h), async_error::already_completed);
    }
    detail::connection& c = *conn_;
    if (c.gone())
        return c.complete(std::move(h), gone_reason(c));
    c.push(data);
    if (c.buffered() <= c.high_water())
        return c.complete(std::move(h), {});
    if (!c.park_write(h))
        c.complete(std::move(h), async_error::busy);
}

void body_writer::initiate_finish(handler_type h)
{
    if (!conn_ || finished_) {
        return post_error(std::move(h), async_error::already_completed);
    }
    finished_ = true;
    detail::connection& c = *conn_;
    if (c.gone())
        c.complete(std::move(h), gone_reason(c));
    else {
        c.park_finish(std::move(h));
        c.end_stream();
    }
    release();
}

void body_writer::abort() noexcept
{
    if (conn_ && !finished_) {
        finished_ = true;
        conn_->close();
    }
    release();
}

}  // namespace fapws
