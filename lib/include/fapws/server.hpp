// The server: one io_context, one thread, listeners, a router, timers and the
// defer queue. Construct, add listeners and routes, then run() on the thread
// that owns it. Every member is for that thread, except stop(), which may be
// called from any thread or a signal-free context.
#pragma once

#include <fapws/config.hpp>
#include <fapws/defer_queue.hpp>
#include <fapws/error.hpp>
#include <fapws/http.hpp>
#include <fapws/log.hpp>
#include <fapws/responder.hpp>
#include <fapws/router.hpp>
#include <fapws/static_files.hpp>
#include <fapws/timer.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace fapws {

struct listen_options {
    bool reuse_port = false;     // SO_REUSEPORT, for several processes on one port
    int backlog = -1;            // -1: config::backlog
    std::string url_scheme = "http";  // what wsgi.url_scheme reports
    // Every connection starts with HAProxy's PROXY protocol header (v1 or
    // v2), which gives the client's address; without one it is refused.
    // Only for a listener that nothing but the proxy can reach.
    bool proxy_protocol = false;
};

class server {
public:
    // The server owns its io_context: run() drives it.
    explicit server(config cfg = {});
    // The server lives on your io_context: start() it, then your
    // ioc.run() serves it beside your own work; async_stop() ends it.
    // One thread runs that io_context. Destroy the server after
    // async_stop completed (or before start()).
    server(boost::asio::io_context& ioc, config cfg = {});
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    const config& settings() const noexcept;
    boost::asio::io_context& context() noexcept;
    // Around fork(): prepare before, parent or child after. A child gets its
    // own epoll sets and keeps the listeners, so it can run() (pre-fork
    // workers). Use this rather than context().notify_fork().
    void notify_fork(boost::asio::execution_context::fork_event e);

    // Listeners; each throws setup_error when it cannot bind. The returned
    // info carries the real port (pass port 0 for an ephemeral one).
    //   "127.0.0.1:8080", "[::1]:8080", ":8080" (all IPv4+IPv6), "localhost:80",
    //   "unix:/run/app.sock", "unix:@abstract", "fd:3"
    listener_info listen(std::string_view spec, const listen_options& opt = {});
    listener_info listen_tcp(const std::string& host, std::uint16_t port,
                             const listen_options& opt = {});
    listener_info listen_unix(const std::string& path, const listen_options& opt = {});
    // Adopts an already listening socket (socket activation, pre-fork).
    listener_info listen_fd(int fd, const listen_options& opt = {});
    // The open listening descriptors, in listen() order; owned by the
    // server (dup one to keep it past stop(), e.g. across an exec).
    std::vector<int> listener_fds() const;
    // Serves one connected stream socket as if it had been accepted: one
    // end of a socketpair (a test, or a parent process talking to a child),
    // a connection handed over with SCM_RIGHTS. The server owns fd from
    // here and closes it. Call it on the loop thread, or before run() or
    // start(). False (fd closed) once the server is stopping.
    bool serve_socket(int fd);

    // Handlers, see router.hpp. route("/", h) is the catch-all. Routes are
    // set up before run(); mounting one later, from the loop thread, is safe.
    void route(std::string prefix, handler h, route_options opt = {});
    // An asynchronous handler: it keeps the responder and answers later.
    void route(std::string prefix, async_handler h, route_options opt = {});
    // A coroutine handler, awaitable<response>(request): spawned on the
    // loop with an owned request and the connection's cancellation slot
    // bound (a client that leaves cancels what it co_awaits); what it
    // co_returns is sent, what it throws is a 500.
    template <typename F>
        requires std::is_invocable_r_v<boost::asio::awaitable<response>, F&, request>
    void route(std::string prefix, F f, route_options opt = {})
    {
        route(std::move(prefix), async_handler(coroutine_route<F>{std::move(f)}), std::move(opt));
    }
    void fallback(handler h);
    // Serves directory root under prefix with the static file handler.
    void static_files(std::string prefix, const std::string& root, const static_options& opt = {});

    // Runs callback every interval on the loop thread, starting one interval
    // from now. An exception from it is logged and the timer goes on.
    timer add_timer(std::chrono::milliseconds interval, std::function<void()> callback);

    // Queues a task for when the loop is idle; see defer_queue::push.
    bool defer(std::function<void()> task, std::optional<std::string> key = {});
    std::size_t defer_queue_size() const noexcept;

    // Access log: path, or "-" for stdout; empty turns it off.
    void access_log(const std::string& path, access_log_format fmt = access_log_format::common);
    // The same with gunicorn's atoms: %(h)s client, %(l)s, %(u)s, %(t)s
    // time, %(r)s request line, %(m)s method, %(U)s path, %(q)s query,
    // %(H)s protocol, %(s)s status, %(b)s/%(B)s bytes, %(f)s referer,
    // %(a)s user agent, %(T)s/%(D)s/%(L)s duration in s/us/decimal s (head
    // complete to response head sent), %(p)s pid, %({name}i)s a request
    // header. Throws setup_error on an unknown atom.
    void access_log(const std::string& path, std::string_view format);

    // Called around each blocking wait for I/O (the Python bindings release
    // and retake the GIL there). Both run on the loop thread.
    void set_wait_hooks(std::function<void()> before_wait, std::function<void()> after_wait);

    // Runs the loop until stopped. Returns after a graceful stop completed.
    // For a server that owns its io_context.
    void run();
    // For a server on your io_context: starts accepting; your run() then
    // serves. Connection events, queued actions and deferred tasks run from
    // handlers posted to that io_context (deferred tasks when a turn found
    // nothing else of ours to do, after the handlers already queued).
    void start();
    // Graceful stop (as stop()) that completes, with any Asio token, once
    // every connection is closed and every wait of ours cancelled: your
    // run() returns when nothing of yours is left. Safe from any thread.
    template <typename Token>
    auto async_stop(Token&& token)
    {
        return boost::asio::async_initiate<Token, void()>(
            [this](auto handler) { initiate_stop(boost::asio::any_completion_handler<void()>(std::move(handler))); },
            token);
    }
    // Graceful stop: stop accepting, close idle connections, let in-flight
    // requests finish for config::shutdown_timeout, then close the rest.
    // Safe from any thread.
    void stop();
    // Immediate stop: closes everything now. Loop thread only.
    void stop_now();
    bool stopping() const noexcept;

    const stats& counters() const noexcept;

    class impl;

private:
    void initiate_stop(boost::asio::any_completion_handler<void()> h);
    template <typename F>
    struct coroutine_route {
        F f;
        void operator()(responder r)
        {
            auto ex = r.get_executor();
            auto slot = r.cancellation_slot();
            auto work = f(r.take_request());  // before r moves into the completion
            boost::asio::co_spawn(ex, std::move(work),
                                  boost::asio::bind_cancellation_slot(
                                      slot, [r = std::move(r)](std::exception_ptr e, response res) mutable {
                                          if (e)
                                              r.fail(e);
                                          else
                                              r.send(std::move(res));
                                      }));
        }
    };

    std::unique_ptr<impl> impl_;
};

}  // namespace fapws
