// Private: the shared state behind a fapws::timer handle.
#pragma once

#include "server_impl.hpp"

#include <functional>
#include <memory>
#include <optional>

namespace fapws::detail {

struct timer_state : std::enable_shared_from_this<timer_state> {
    server::impl* srv = nullptr;           // null once the server is gone
    std::optional<steady_timer> timer;     // reset before the io_context dies
    std::chrono::steady_clock::duration interval{};
    std::function<void()> callback;
    std::uint64_t generation = 0;          // bumps on stop/restart: stale waits ignore
    bool running = false;

    void schedule(std::chrono::steady_clock::time_point at);
};

}  // namespace fapws::detail
