#include "detail/server_impl.hpp"
#include "detail/timer_state.hpp"

namespace fapws {

namespace detail {

void timer_state::schedule(std::chrono::steady_clock::time_point at)
{
    if (!timer)
        return;
    timer->expires_at(at);
    std::uint64_t gen = generation;
    timer->async_wait([self = shared_from_this(), gen](error_code ec) {
        if (ec || gen != self->generation || !self->running || !self->timer)
            return;
        // Keep the cadence; after a long blocking task, skip missed beats.
        auto now = std::chrono::steady_clock::now();
        auto next = self->timer->expiry() + self->interval;
        if (next <= now)
            next = now + self->interval;
        try {
            self->callback();
        } catch (const std::exception& e) {
            if (self->srv)
                ++self->srv->stats_.task_errors;
            log_error(std::string("timer callback failed: ") + e.what());
        } catch (...) {
            if (self->srv)
                ++self->srv->stats_.task_errors;
            log_error("timer callback failed");
        }
        if (gen == self->generation && self->running)
            self->schedule(next);
    });
}

}  // namespace detail

void timer::stop()
{
    if (!state_ || !state_->timer)
        return;
    state_->running = false;
    ++state_->generation;
    state_->timer->cancel();
}

void timer::restart()
{
    if (!state_ || !state_->timer)
        return;
    state_->running = true;
    ++state_->generation;
    state_->timer->cancel();
    state_->schedule(std::chrono::steady_clock::now() + state_->interval);
}

bool timer::running() const noexcept
{
    return state_ && state_->timer && state_->running;
}

std::chrono::milliseconds timer::interval() const noexcept
{
    return state_ ? std::chrono::duration_cast<std::chrono::milliseconds>(state_->interval)
                  : std::chrono::milliseconds(0);
}

}  // namespace fapws
