#include <fapws/defer_queue.hpp>
#include <fapws/error.hpp>

namespace fapws {

bool defer_queue::push(std::function<void()> task, std::optional<std::string> key)
{
    if (key && keys_.count(*key))
        return false;
    if (tasks_.size() >= limit_)
        throw defer_queue_full("defer queue full (" + std::to_string(limit_) + " tasks)");
    if (key)
        keys_.insert(*key);
    tasks_.push_back({std::move(task), std::move(key)});
    return true;
}

bool defer_queue::run_one()
{
    if (tasks_.empty())
        return false;
    entry e = std::move(tasks_.front());
    tasks_.pop_front();
    if (e.key)
        keys_.erase(*e.key);
    e.task();
    return true;
}

void defer_queue::clear() noexcept
{
    tasks_.clear();
    keys_.clear();
}

}  // namespace fapws
