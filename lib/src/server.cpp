#include <fapws/server.hpp>

#include "detail/clock.hpp"
#include "detail/listener.hpp"
#include "detail/server_impl.hpp"
#include "detail/timer_state.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace fapws {

namespace {

std::string default_spool_dir()
{
    const char* t = std::getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

}  // namespace

server::impl::owned_context::owned_context(bool want)
{
    // One thread: no locking per descriptor; the scheduler keeps its lock so
    // other threads may still post() to the loop.
    if (want)
        ctx.emplace(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO);
}

server::impl::impl(config c, net::io_context* external)
    : cfg_(std::move(c)),
      own_(external == nullptr),
      ioc_(external ? *external : *own_.ctx),
      external_(external != nullptr),
      defer_(cfg_.defer_limit),
      sweep_timer_(ioc_.get_executor())
{
    if (cfg_.spool_dir.empty())
        cfg_.spool_dir = default_spool_dir();
    if (cfg_.header_limit < 256 || cfg_.header_line_limit < 64)
        throw setup_error("header limits too small (header_limit >= 256, header_line_limit >= 64)");
    if (cfg_.block_size == 0)
        throw setup_error("block_size must be positive");
    constexpr std::int64_t max_timeout = 24LL * 24 * 3600 * 1000;  // see remaining_ms()
    for (auto t : {cfg_.header_timeout, cfg_.keepalive_timeout, cfg_.io_timeout})
        if (t.count() < 0 || t.count() > max_timeout)
            throw setup_error("timeouts must be between 0 and 24 days");
    lists_[0].timeout_ms = static_cast<std::uint32_t>(cfg_.header_timeout.count());
    lists_[1].timeout_ms = static_cast<std::uint32_t>(cfg_.keepalive_timeout.count());
    lists_[2].timeout_ms = static_cast<std::uint32_t>(cfg_.io_timeout.count());
    lists_[3].timeout_ms = static_cast<std::uint32_t>(std::min<std::int64_t>(5000, cfg_.io_timeout.count()));
    lists_[4].timeout_ms = static_cast<std::uint32_t>(max_timeout);  // waiting on the application
    open_epoll();
    // One read buffer for every connection: a whole head always fits.
    rbuf_size_ = std::max<std::size_t>(64 * 1024, cfg_.header_limit + 1024);
    rbuf_ = std::make_unique<char[]>(rbuf_size_);
    out_.reserve(64 * 1024);
    // A write to a closed peer must be an error, not a signal.
    std::signal(SIGPIPE, SIG_IGN);
}

server::impl::~impl()
{
    for (auto& l : listeners_)
        l->close();
    for (auto& list : lists_)
        while (list.head)
            list.head->close();
    for (auto& w : timers_) {
        if (auto t = w.lock()) {
            t->running = false;
            t->srv = nullptr;
            t->timer.reset();
        }
    }
    flush_access_log();
    if (access_owned_ && access_fd_ >= 0)
        ::close(access_fd_);
    // Let the cancelled waits and queued connection actions run, so every
    // reference is released before the io_context goes away. The
    // embedder's io_context is not ours to run: there, async_stop()
    // cancelled our waits and they ran before its completion handler.
    error_code ec;
    sweep_timer_.cancel();
    if (signals_)
        signals_->cancel(ec);
    if (!external_) {
        ioc_.restart();
        ioc_.poll();
    }
    while (run_ready()) {
    }
    ep_.reset();  // closes epfd_
}

std::size_t server::impl::run_ready()
{
    if (ready_.empty())
        return 0;
    ready_now_.swap(ready_);  // what these post runs next turn
    for (auto& r : ready_now_)
        r.run(r.c);
    std::size_t n = ready_now_.size();
    ready_now_.clear();
    return n;
}

void server::impl::opened(detail::connection&) noexcept
{
    ++stats_.connections_accepted;
    ++stats_.connections_open;
}

void server::impl::closed(detail::connection&) noexcept
{
    ++stats_.connections_closed;
    --stats_.connections_open;
    check_stopped();
}

void server::impl::count_latency(std::int64_t started_us) noexcept
{
    const std::int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::steady_clock::now().time_since_epoch())
                                .count() -
                            started_us;
    const auto& bounds = stats::latency_bounds_us;
    std::size_t i = 0;
    while (i < std::size(bounds) && us > std::int64_t(bounds[i]))
        ++i;
    ++stats_.latency[i];
    stats_.latency_sum_us += static_cast<std::uint64_t>(std::max<std::int64_t>(us, 0));
}

void server::impl::begin_stop()
{
    if (stopping_ || !running_)
        return;
    stopping_ = true;
    log_info("stopping: finishing in-flight requests");
    for (auto& l : listeners_)
        l->close();
    // Close the idle, let the busy finish their current response.
    for (auto& list : lists_) {
        detail::connection* c = list.head;
        while (c) {
            detail::connection* next = c->next_;
            c->add_ref();
            c->drain();
            c->release();
            c = next;
        }
    }
    if (cfg_.drain_grace.count() > 0) {
        grace_timer_.emplace(ioc_.get_executor());
        grace_timer_->expires_after(std::min(cfg_.drain_grace, cfg_.shutdown_timeout));
        grace_timer_->async_wait([this](error_code ec) {
            if (!ec)
                close_idle();
        });
    }
    stop_timer_.emplace(ioc_.get_executor());
    stop_timer_->expires_after(cfg_.shutdown_timeout);
    stop_timer_->async_wait([this](error_code ec) {
        if (!ec) {
            log_warning("shutdown timeout: closing the remaining connections");
            finish_stop();
        }
    });
    check_stopped();
}

// The drain grace passed: what is still idle closes now.
void server::impl::close_idle()
{
    for (auto& list : lists_) {
        detail::connection* c = list.head;
        while (c) {
            detail::connection* next = c->next_;
            c->add_ref();
            if (c->idle())
                c->close();
            c->release();
            c = next;
        }
    }
    check_stopped();
}

void server::impl::check_stopped()
{
    if (stopping_ && running_ && stats_.connections_open == 0)
        finish_stop();
}

void server::impl::finish_stop()
{
    stopping_ = true;
    for (auto& l : listeners_)
        l->close();
    for (auto& list : lists_)
        while (list.head)
            list.head->close();
    if (stop_timer_)
        stop_timer_->cancel();
    if (grace_timer_)
        grace_timer_->cancel();
    flush_access_log();
    stopped_ = true;
    if (external_)
        stopped_external();
}

// ------------------------------------------------------------ start(): the embedder's io_context

void server::impl::queue(ready_item item)
{
    ready_.push_back(item);
    if (external_ && running_)
        post_drive();
}

void server::impl::post_drive()
{
    if (drive_posted_)
        return;
    drive_posted_ = true;
    net::post(ioc_, [this] {
        drive_posted_ = false;
        drive();
    });
}

// One turn of our loop, run from a handler on the embedder's io_context:
// connection events and queued actions, a few rounds at most so its own
// handlers keep their turn; a deferred task when we found nothing to do.
void server::impl::drive()
{
    if (stopped_ || !running_)
        return;
    for (int round = 0; round < 8; ++round) {
        std::size_t n = poll_io() + run_ready();
        if (stopped_)
            return;
        if (n == 0) {
            if (!defer_.empty()) {
                ++stats_.deferred_run;
                try {
                    defer_.run_one();
                } catch (const std::exception& e) {
                    ++stats_.task_errors;
                    log_error(std::string("deferred task failed: ") + e.what());
                } catch (...) {
                    ++stats_.task_errors;
                    log_error("deferred task failed");
                }
                if (!defer_.empty())
                    post_drive();
            }
            if (!ready_.empty())
                post_drive();
            return arm_external();
        }
    }
    post_drive();  // still busy: after the handlers queued meanwhile
    arm_external();
}

// Stopped on the embedder's io_context: cancel what we still wait on, so
// its run() can return, then complete async_stop after those cancellations.
void server::impl::stopped_external()
{
    error_code ec;
    if (ep_)
        ep_->cancel(ec);
    sweep_timer_.cancel();
    sweep_at_ = 0;
    if (access_timer_)
        access_timer_->cancel();
    if (signals_)
        signals_->cancel(ec);
    running_ = false;
    if (stop_done_) {
        boost::asio::any_completion_handler<void()> h;
        h.swap(stop_done_);  // not operator=: Boost 1.81's recurses
        net::post(ioc_, [h = std::move(h)]() mutable { std::move(h)(); });
    }
}

server::server(config cfg) : impl_(std::make_unique<impl>(std::move(cfg), nullptr)) {}

server::server(boost::asio::io_context& ioc, config cfg) : impl_(std::make_unique<impl>(std::move(cfg), &ioc)) {}

server::~server() = default;

const config& server::settings() const noexcept
{
    return impl_->cfg_;
}

boost::asio::io_context& server::context() noexcept
{
    return impl_->ioc_;
}

void server::notify_fork(boost::asio::execution_context::fork_event e)
{
    impl_->ioc_.notify_fork(e);
    // After fork the connections' epoll set is shared with the parent.
    if (e == boost::asio::execution_context::fork_child)
        impl_->open_epoll();
}

void server::route(std::string prefix, handler h, route_options opt)
{
    impl_->router_.mount(std::move(prefix), std::move(h), std::move(opt));
}

void server::route(std::string prefix, async_handler h, route_options opt)
{
    impl_->router_.mount(std::move(prefix), std::move(h), std::move(opt));
}

void server::fallback(handler h)
{
    impl_->router_.fallback(std::move(h));
}

void server::static_files(std::string prefix, const std::string& root, const static_options& opt)
{
    // Only GET and HEAD: an upload is refused before its body is read.
    route_options get_head;
    get_head.methods = {"GET", "HEAD"};
    impl_->router_.mount(std::move(prefix), fapws::static_files(root, opt), std::move(get_head));
}

timer server::add_timer(std::chrono::milliseconds interval, std::function<void()> callback)
{
    if (interval.count() <= 0)
        throw std::invalid_argument("timer interval must be positive");
    auto st = std::make_shared<detail::timer_state>();
    st->srv = impl_.get();
    st->timer.emplace(impl_->ioc_.get_executor());
    st->interval = interval;
    st->callback = std::move(callback);
    st->running = true;
    st->schedule(std::chrono::steady_clock::now() + interval);
    auto& reg = impl_->timers_;
    std::erase_if(reg, [](const auto& w) { return w.expired(); });
    reg.push_back(st);
    return timer(std::move(st));
}

bool server::defer(std::function<void()> task, std::optional<std::string> key)
{
    bool added = impl_->defer_.push(std::move(task), std::move(key));
    if (added && impl_->external_ && impl_->running_)
        impl_->post_drive();
    return added;
}

std::size_t server::defer_queue_size() const noexcept
{
    return impl_->defer_.size();
}

std::vector<int> server::listener_fds() const
{
    std::vector<int> fds;
    for (auto& l : impl_->listeners_)
        if (int fd = l->fd(); fd >= 0)
            fds.push_back(fd);
    return fds;
}

void server::set_wait_hooks(std::function<void()> before_wait, std::function<void()> after_wait)
{
    impl_->before_wait_ = std::move(before_wait);
    impl_->after_wait_ = std::move(after_wait);
}

// What run() and start() share: listeners, signals, the access log's flush.
void server::impl::begin_serving()
{
    if (running_)
        throw std::logic_error("the server is already running");
    running_ = true;
    stopping_ = false;
    stopped_ = false;
    sigint_count_ = 0;
    if (::access(cfg_.spool_dir.c_str(), W_OK | X_OK) != 0)
        log_warning("spool directory " + cfg_.spool_dir + " is not writable (" + std::strerror(errno) +
                    "): request bodies above " + std::to_string(cfg_.body_memory_limit) + " bytes will get 500");
    for (auto& l : listeners_)
        l->start();
    if (cfg_.handle_signals) {
        signals_.emplace(ioc_, SIGINT, SIGTERM);
        struct on_signal {
            impl* s;
            void operator()(error_code ec, int sig) const
            {
                if (ec)
                    return;
                if (sig == SIGINT && ++s->sigint_count_ >= 2) {
                    log_warning("second SIGINT: stopping now");
                    s->finish_stop();
                    return;
                }
                s->begin_stop();
                s->signals_->async_wait(*this);
            }
        };
        signals_->async_wait(on_signal{this});
    }
    if (access_fd_ >= 0) {
        access_timer_.emplace(ioc_.get_executor());
        struct flusher {
            impl* s;
            void operator()(error_code ec) const
            {
                if (ec)
                    return;
                s->flush_access_log();
                s->access_timer_->expires_after(std::chrono::seconds(1));
                s->access_timer_->async_wait(*this);
            }
        };
        access_timer_->expires_after(std::chrono::seconds(1));
        access_timer_->async_wait(flusher{this});
    }
}

void server::start()
{
    impl& s = *impl_;
    if (!s.external_)
        throw std::logic_error("server::start() is for a server built on your io_context; call run()");
    s.begin_serving();
    s.post_drive();
}

void server::initiate_stop(boost::asio::any_completion_handler<void()> h)
{
    impl* s = impl_.get();
    net::post(s->ioc_, [s, h = std::move(h)]() mutable {
        if (!s->running_) {
            std::move(h)();  // not started, or stopped already
            return;
        }
        s->stop_done_.swap(h);
        s->begin_stop();
    });
}

void server::run()
{
    impl& s = *impl_;
    if (s.external_)
        throw std::logic_error("server::run() owns its io_context; this server runs on yours: call start()");
    s.ioc_.restart();
    auto work = net::make_work_guard(s.ioc_);
    s.begin_serving();

    struct reset_running {
        impl& s;
        ~reset_running()
        {
            s.running_ = false;
            error_code ec;
            if (s.signals_)
                s.signals_->cancel(ec);
            s.signals_.reset();
            if (s.access_timer_)
                s.access_timer_->cancel();
            s.flush_access_log();
            s.busy_.stop();
        }
    } guard{s};
    if (s.cfg_.busy_release.count() > 0)
        s.busy_.start(s.cfg_.busy_release, s.lists_[static_cast<int>(detail::wait_list::keepalive)]);
    const bool watched = s.busy_.on();

    // Busy, the loop polls the connections' set every turn and the
    // io_context (accepts, timers, signals) every eighth: one epoll_wait a
    // turn, like nginx's loop. A deferred task runs only when both were
    // found empty; with none queued, the loop goes straight to run_one(),
    // which runs what the io_context has ready or blocks.
    //
    // Woken from a block by a handful of events and done with them, the loop
    // blocks again at once instead of polling the set once more: anything
    // that arrived meanwhile already raised the set's edge in the io_context.
    // A client trickling bytes then costs one epoll_wait and one recv a byte
    // (plus Asio's re-arm), not two polls of an empty set (issue #9).
    unsigned turn = 0;
    bool woke = false;
    while (!s.stopped_) {
        if (watched)
            s.busy_.turn(detail::now_ms());
        std::size_t events = s.poll_io();
        std::size_t n = events + s.run_ready();
        if (s.stopped_)
            break;
        bool settled = woke && events < impl::poll_batch && s.ready_.empty() && s.defer_.empty();
        woke = false;
        // While asynchronous handlers wait, their timers and upstream
        // replies are io_context work: poll it every turn then, so a busy
        // server does not starve them (issue #10).
        const bool app_waits = s.lists_[static_cast<int>(detail::wait_list::app)].size != 0;
        // (The portable build's connection events are io_context handlers:
        // there it polls the io_context every turn.)
        if (n && !settled && !app_waits && detail::own_reactor && ++turn % 8 != 0)
            continue;
        if ((n && !settled) || !s.defer_.empty()) {
            n += s.ioc_.poll();
            if (s.stopped_)
                break;
            if (n || !s.ready_.empty())
                continue;
            ++s.stats_.deferred_run;
            try {
                s.defer_.run_one();
            } catch (const std::exception& e) {
                ++s.stats_.task_errors;
                log_error(std::string("deferred task failed: ") + e.what());
            } catch (...) {
                ++s.stats_.task_errors;
                log_error("deferred task failed");
            }
            continue;
        }
        s.arm_io();
        if (s.before_wait_)
            s.before_wait_();
        if (watched)
            s.busy_.idle();  // blocked with nothing to do: not stuck
        s.ioc_.run_one();
        woke = true;
        if (s.after_wait_)
            s.after_wait_();
    }
}

void server::stop()
{
    impl* s = impl_.get();
    net::post(s->ioc_, [s] { s->begin_stop(); });
}

void server::stop_now()
{
    if (impl_->running_)
        impl_->finish_stop();
}

bool server::stopping() const noexcept
{
    return impl_->stopping_;
}

const stats& server::counters() const noexcept
{
    return impl_->stats_;
}

}  // namespace fapws
