// The timeout lists: connections waiting on the same timeout, oldest
// deadline first (detail::timeout_list), and the one timer that serves them
// all, armed for the earliest deadline.
#include "detail/clock.hpp"
#include "detail/server_impl.hpp"

#include <algorithm>
#include <mutex>

namespace fapws {

void server::impl::track(detail::connection& c, detail::wait_list l) noexcept
{
    auto& list = lists_[static_cast<int>(l)];
    std::unique_lock<std::mutex> g(busy_.list_mutex(), std::defer_lock);
    if (l == detail::wait_list::keepalive && busy_.on())
        g.lock();  // busy_watch's thread walks this list
    c.list_ = l;
    const std::int64_t now = detail::now_ms();
    c.enqueued_ = static_cast<std::uint32_t>(now);
    c.prev_ = list.tail;
    c.next_ = nullptr;
    if (list.tail)
        list.tail->next_ = &c;
    else
        list.head = &c;
    list.tail = &c;
    ++list.size;
    const std::int64_t deadline = now + list.timeout_ms;
    if (sweep_at_ == 0 || deadline < sweep_at_)
        arm_sweep(deadline);
}

void server::impl::untrack(detail::connection& c) noexcept
{
    if (c.list_ == detail::wait_list::none)
        return;
    auto& list = lists_[static_cast<int>(c.list_)];
    std::unique_lock<std::mutex> g(busy_.list_mutex(), std::defer_lock);
    if (c.list_ == detail::wait_list::keepalive && busy_.on())
        g.lock();
    (c.prev_ ? c.prev_->next_ : list.head) = c.next_;
    (c.next_ ? c.next_->prev_ : list.tail) = c.prev_;
    c.prev_ = c.next_ = nullptr;
    c.list_ = detail::wait_list::none;
    --list.size;
}

void server::impl::arm_sweep(std::int64_t deadline)
{
    sweep_at_ = deadline;
    // The coarse clock may lag by a tick: wait a little past the deadline.
    auto wait = std::chrono::milliseconds(std::max<std::int64_t>(0, deadline - detail::now_ms()) + 5);
    sweep_timer_.expires_after(wait);
    sweep_timer_.async_wait([this](error_code ec) {
        if (ec)
            return;
        sweep_at_ = 0;
        sweep();
    });
}

void server::impl::sweep()
{
    const std::int64_t now = detail::now_ms();
    const auto now32 = static_cast<std::uint32_t>(now);
    std::int64_t next = 0;
    for (auto& list : lists_) {
        while (list.head && detail::remaining_ms(list.head->enqueued_, list.timeout_ms, now32) <= 0) {
            detail::connection* c = list.head;
            c->add_ref();
            c->on_timeout();
            c->release();
        }
        if (list.head) {
            std::int64_t due = now + detail::remaining_ms(list.head->enqueued_, list.timeout_ms, now32);
            if (next == 0 || due < next)
                next = due;
        }
    }
    if (next)
        arm_sweep(next);
}

}  // namespace fapws
