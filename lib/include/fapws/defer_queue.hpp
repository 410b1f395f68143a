// The defer queue (FAPWS's "defer"): tasks that run FIFO, one at a time, only
// when the loop has no ready I/O handler.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <unordered_set>

namespace fapws {

// Owned by the server and used on the loop thread only.
class defer_queue {
public:
    explicit defer_queue(std::size_t limit) : limit_(limit) {}

    // Appends task. With a key, nothing is added when a task with an equal key
    // is already queued (FAPWS's `combined`); returns false then. Throws
    // fapws::defer_queue_full when the queue already holds `limit` tasks.
    bool push(std::function<void()> task, std::optional<std::string> key = {});
    // Runs the oldest task; false when empty. Exceptions propagate, after the
    // task left the queue.
    bool run_one();
    std::size_t size() const noexcept { return tasks_.size(); }
    bool empty() const noexcept { return tasks_.empty(); }
    std::size_t limit() const noexcept { return limit_; }
    void clear() noexcept;

private:
    struct entry {
        std::function<void()> task;
        std::optional<std::string> key;
    };
    std::deque<entry> tasks_;
    std::unordered_set<std::string> keys_;
    std::size_t limit_;
};

}  // namespace fapws
