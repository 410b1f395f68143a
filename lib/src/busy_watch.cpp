#include "detail/busy_watch.hpp"

#include "detail/clock.hpp"
#include "detail/connection.hpp"

#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>

namespace fapws::detail {

void busy_watch::start(std::chrono::milliseconds after, timeout_list& idle)
{
    stop();
    idle_ = &idle;
    after_ms_ = after.count();
    turn_ms_.store(0, std::memory_order_relaxed);
    stopping_ = false;
    on_ = true;
    thread_ = std::thread([this] { run(); });
}

void busy_watch::stop() noexcept
{
    if (!thread_.joinable())
        return;
    {
        std::lock_guard<std::mutex> g(wake_mu_);
        stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
    on_ = false;
}

void busy_watch::run()
{
    // A quarter of the limit between looks, at most 100 ms: a connection is
    // released between busy_release and 1.25 times it into a long handler.
    const auto period = std::chrono::milliseconds(std::clamp<std::int64_t>(after_ms_ / 4, 5, 100));
    std::int64_t released_turn = -1;
    std::unique_lock<std::mutex> lk(wake_mu_);
    while (!wake_.wait_for(lk, period, [this] { return stopping_; })) {
        const std::int64_t since = turn_ms_.load(std::memory_order_relaxed);
        if (since == 0 || since == released_turn || now_ms() - since < after_ms_)
            continue;
        released_turn = since;  // once per stuck turn
        release_idle();
    }
}

void busy_watch::release_idle()
{
    std::lock_guard<std::mutex> g(mu_);
    for (connection* c = idle_->head; c; c = c->next_) {
        if (c->released())
            continue;
        // A request already waiting in the socket stays: it is answered
        // after the handler, like any pipelined one.
        int pending = 0;
        if (::ioctl(c->socket(), FIONREAD, &pending) != 0 || pending != 0)
            continue;
        c->release_idle();
        ::shutdown(c->socket(), SHUT_WR);
    }
}

}  // namespace fapws::detail
