// Periodic callbacks on the loop (FAPWS's "timers"): add_timer(interval, cb)
// runs cb every interval on the loop thread until stopped.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

namespace fapws {

namespace detail {
struct timer_state;
}

// A handle to a periodic timer. Copies refer to the same timer. Use it on the
// loop thread only. The timer keeps running when the handle is dropped.
class timer {
public:
    timer() = default;
    // Stops the timer; the callback is not called again until restart().
    void stop();
    // (Re)starts it: the next call is one interval from now.
    void restart();
    bool running() const noexcept;
    std::chrono::milliseconds interval() const noexcept;
    explicit operator bool() const noexcept { return state_ != nullptr; }

private:
    friend class server;
    explicit timer(std::shared_ptr<detail::timer_state> s) : state_(std::move(s)) {}
    std::shared_ptr<detail::timer_state> state_;
};

}  // namespace fapws
