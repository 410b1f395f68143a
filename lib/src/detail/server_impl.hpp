// Private: the server's state. Never installed.
#pragma once

#include <fapws/server.hpp>

#include "busy_watch.hpp"
#include "connection.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fapws {

class server::impl {
public:
    // Connection actions queued for the next turn (connection::post).
    struct ready_item {
        detail::connection* c;
        void (*run)(detail::connection*);
    };

    impl(config c, net::io_context* external);
    ~impl();

    // Timeout lists.
    void track(detail::connection& c, detail::wait_list l) noexcept;
    void untrack(detail::connection& c) noexcept;
    void arm_sweep(std::int64_t deadline);
    void sweep();

    void opened(detail::connection&) noexcept;
    void closed(detail::connection&) noexcept;

    // started_us: when the head was complete (steady clock), 0 unknown.
    void log_access(const request& req, int status, std::uint64_t bytes, std::int64_t started_us = 0);
    // config::latency_histogram: one response whose request's head was
    // complete at started_us (steady clock).
    void count_latency(std::int64_t started_us) noexcept;
    void flush_access_log();

    void begin_serving();
    void begin_stop();
    void finish_stop();
    void check_stopped();

    config cfg_;
    // Ours (run()), or the embedder's (start()): ioc_ refers to one of them.
    struct owned_context {
        std::optional<net::io_context> ctx;
        explicit owned_context(bool want);
    } own_;
    net::io_context& ioc_;
    bool external_;  // the embedder's io_context drives us (start())
    // start(): our work runs from handlers on the embedder's io_context.
    bool drive_posted_ = false;
    void drive();
    void post_drive();
    void arm_external();
    void queue(ready_item item);
    boost::asio::any_completion_handler<void()> stop_done_;
    void stopped_external();

    // The connections' epoll set (see connection), and its descriptor in the
    // io_context, armed only when the loop is about to block.
    int epfd_ = -1;
    std::optional<descriptor> ep_;
    bool ep_armed_ = false;
    void open_epoll();
    // Dispatches ready connection events without blocking, at most
    // poll_batch; returns how many.
    static constexpr std::size_t poll_batch = 128;
    std::size_t poll_io();
    void arm_io();
    std::vector<ready_item> ready_, ready_now_;
    std::size_t run_ready();
    router router_;
    defer_queue defer_;
    stats stats_;
    std::vector<std::unique_ptr<detail::listener>> listeners_;
    std::vector<std::weak_ptr<detail::timer_state>> timers_;

    detail::timeout_list lists_[detail::wait_lists];
    detail::busy_watch busy_;  // config::busy_release
    steady_timer sweep_timer_;
    std::int64_t sweep_at_ = 0;  // 0: not armed

    // Loop-owned scratch, reused by every connection (one thread).
    std::unique_ptr<char[]> rbuf_;
    std::size_t rbuf_size_;
    std::string out_;
    request req_;
    request_body body_;
    response res_;
    std::optional<detail::request_parser> parser_;
    // While a put() may complete a head: its route is not known yet (a
    // streamed body must not be spooled), so its body bytes stay in memory.
    // They are at most the input of that put(), one read.
    bool head_in_put_ = false;
    std::string stage_;  // the first blocks of a streamed body, before the head
    // Output buffers of finished flights, reused: freeing and re-growing a
    // 64 KiB buffer per streamed response made glibc trim and re-fault the
    // heap (brk) twice a request.
    std::vector<std::string> spare_;
    static constexpr std::size_t max_spare = 32;

    // Access log.
    int access_fd_ = -1;
    bool access_owned_ = false;
    access_log_format access_fmt_ = access_log_format::common;
    // A custom format: literal text and atoms, parsed once.
    struct log_token {
        char atom;          // 0: literal text; 'i': a request header
        std::string text;   // the literal, or the header name
    };
    std::vector<log_token> access_tokens_;
    bool access_timed_ = false;  // the format shows a duration
    void log_custom(const request& req, int status, std::uint64_t bytes, std::int64_t started_us);
    std::string access_buf_;
    std::optional<steady_timer> access_timer_;

    std::optional<net::signal_set> signals_;
    std::optional<steady_timer> stop_timer_;
    std::optional<steady_timer> grace_timer_;  // closes what is still idle after drain_grace
    void close_idle();
    std::function<void()> before_wait_, after_wait_;
    // What request::listener() says for server::serve_socket's connections.
    listener_info served_tcp_{"socket", 0, "http", false, false};
    listener_info served_unix_{"socket", 0, "http", true, false};
    bool running_ = false;
    bool stopping_ = false;
    bool stopped_ = false;
    int sigint_count_ = 0;
};

}  // namespace fapws
