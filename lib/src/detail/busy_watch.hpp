// config::busy_release: fair keep-alive when several processes share a port.
// A process stuck in a long synchronous handler cannot read its other
// keep-alive connections; a request sent on one of them would wait for the
// handler (seconds) although another process is free. A watcher thread sees
// the loop stuck and gives those idle connections a FIN, so their clients
// send the next request on a new connection, which a free process accepts
// (clients retry on a closed keep-alive connection: RFC 9112 section 9.3.1).
//
// The thread touches only the keep-alive list, under a mutex the loop takes
// when it links or unlinks a connection there (two uncontended locks a
// request, and only with busy_release on), and the sockets' write sides.
// The loop owns every close: a released connection closes on its next event.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace fapws::detail {

struct timeout_list;

class busy_watch {
public:
    busy_watch() = default;
    busy_watch(const busy_watch&) = delete;
    busy_watch& operator=(const busy_watch&) = delete;
    ~busy_watch() { stop(); }

    // Starts the thread; `idle` is the keep-alive list it walks.
    void start(std::chrono::milliseconds after, timeout_list& idle);
    void stop() noexcept;
    bool on() const noexcept { return on_; }

    // The loop, at the start of each turn, and right before it blocks with
    // nothing to do (then it is not stuck).
    void turn(std::int64_t now_ms) noexcept { turn_ms_.store(now_ms, std::memory_order_relaxed); }
    void idle() noexcept { turn_ms_.store(0, std::memory_order_relaxed); }

    // Held while the loop links or unlinks a keep-alive connection.
    std::mutex& list_mutex() noexcept { return mu_; }

private:
    void run();
    void release_idle();

    timeout_list* idle_ = nullptr;
    std::int64_t after_ms_ = 0;
    bool on_ = false;
    std::atomic<std::int64_t> turn_ms_{0};
    std::mutex mu_;
    std::thread thread_;
    std::mutex wake_mu_;
    std::condition_variable wake_;
    bool stopping_ = false;  // under wake_mu_
};

}  // namespace fapws::detail
