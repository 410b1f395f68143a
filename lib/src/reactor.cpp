// The connections' reactor (issue #14's seam): on Linux the server's own
// epoll set, polled beside the io_context and waited on as one descriptor
// in it; in the portable build (-Dreactor=asio) nothing here does
// anything, because each connection waits through Asio itself
// (connection::watch). See detail/sys.hpp.
#include "detail/server_impl.hpp"
#include "detail/sys.hpp"

#include <fapws/error.hpp>

#include <cerrno>
#include <cstring>

namespace fapws {

void server::impl::open_epoll()
{
    if constexpr (!detail::own_reactor)
        return;  // each connection waits through Asio's reactor
    if (ep_) {
        error_code ec;
        ep_->close(ec);
        ep_.reset();
    }
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0)
        throw setup_error(std::string("epoll_create1: ") + std::strerror(errno));
    ep_.emplace(ioc_.get_executor(), epfd_);
    ep_armed_ = false;
}

std::size_t server::impl::poll_io()
{
#if !FAPWS_REACTOR_EPOLL
    return 0;  // connection events are io_context handlers
#else
    epoll_event evs[poll_batch];
    int n = ::epoll_wait(epfd_, evs, poll_batch, 0);
    if (n <= 0)
        return 0;
    // A connection may close another one of this batch (a handler stopping
    // the server): the references keep each alive until its turn.
    for (int i = 0; i < n; ++i)
        static_cast<detail::connection*>(evs[i].data.ptr)->add_ref();
    for (int i = 0; i < n; ++i) {
        auto* c = static_cast<detail::connection*>(evs[i].data.ptr);
        c->on_event(evs[i].events);
        c->release();
    }
    return static_cast<std::size_t>(n);
#endif
}

// run(): about to block in the io_context; the set's edge wakes it.
void server::impl::arm_io()
{
    if constexpr (!detail::own_reactor)
        return;  // no set to wait on: connections wait in the io_context
    if (ep_armed_)
        return;
    ep_armed_ = true;
    // Completes when a connection is ready; the loop then polls the set.
    ep_->async_wait(net::posix::descriptor_base::wait_read, [this](error_code ec) {
        if (ec != net::error::operation_aborted)
            ep_armed_ = false;
    });
}

// start(): the same on the embedder's io_context, then one turn of ours.
void server::impl::arm_external()
{
    if constexpr (!detail::own_reactor)
        return;
    if (ep_armed_ || stopped_)
        return;
    ep_armed_ = true;
    ep_->async_wait(net::posix::descriptor_base::wait_read, [this](error_code ec) {
        ep_armed_ = false;
        if (!ec)
            drive();
    });
}

}  // namespace fapws
