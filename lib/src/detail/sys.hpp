// Private: the system calls where Linux has a faster or safer form than
// POSIX. Never installed.
//
// FAPWS_REACTOR_EPOLL (meson -Dreactor=epoll, the default on Linux) takes
// Linux's forms: the connections' own epoll set, accept4 and SOCK_* flags,
// sendfile(2), O_TMPFILE, abstract UNIX sockets. The portable build
// (-Dreactor=asio, the only one on macOS and the BSDs) waits through Asio's
// reactor and takes POSIX's forms only, on Linux too, so CI runs every
// fallback here (issue #14).
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef FAPWS_REACTOR_EPOLL
#error "FAPWS_REACTOR_EPOLL comes from meson (reactor_args): the core's sources only"
#endif

#if FAPWS_REACTOR_EPOLL
#include <sys/epoll.h>
#include <sys/sendfile.h>
#endif

namespace fapws::detail {

// True: connections wait in the server's own epoll set; false: each waits
// through Asio's reactor (kqueue, epoll or select, whichever Asio runs on).
inline constexpr bool own_reactor = FAPWS_REACTOR_EPOLL != 0;

// Readiness a connection is told about (connection::on_event). The epoll
// build passes epoll's bits through untouched.
#if FAPWS_REACTOR_EPOLL
inline constexpr std::uint32_t ev_in = EPOLLIN;
inline constexpr std::uint32_t ev_out = EPOLLOUT;
inline constexpr std::uint32_t ev_hup = EPOLLRDHUP | EPOLLHUP | EPOLLERR;
#else
inline constexpr std::uint32_t ev_in = 1;
inline constexpr std::uint32_t ev_out = 2;
inline constexpr std::uint32_t ev_hup = 4;
#endif

// send(2) flags: no SIGPIPE where the flag exists (Linux, the BSDs). macOS
// has none; the socket gets SO_NOSIGPIPE instead (no_sigpipe), and the
// server ignores SIGPIPE besides.
#ifdef MSG_NOSIGNAL
inline constexpr int send_flags = MSG_NOSIGNAL;
#else
inline constexpr int send_flags = 0;
#endif

inline void no_sigpipe([[maybe_unused]] int fd) noexcept
{
#ifdef SO_NOSIGPIPE
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
}

// Non-blocking and close-on-exec, set with the descriptor where the system
// can, after it otherwise (a fork in between may leak one: the portable
// build's known cost); and no SIGPIPE from it where that is a socket option.
// False (errno set) when fcntl failed.
inline bool prepare_socket(int fd) noexcept
{
    int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return false;
    int fd_fl = ::fcntl(fd, F_GETFD);
    if (fd_fl < 0 || ::fcntl(fd, F_SETFD, fd_fl | FD_CLOEXEC) != 0)
        return false;
    no_sigpipe(fd);
    return true;
}

inline int open_socket(int family) noexcept
{
#if FAPWS_REACTOR_EPOLL
    return ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#else
    int fd = ::socket(family, SOCK_STREAM, 0);
    if (fd >= 0 && !prepare_socket(fd)) {
        ::close(fd);
        return -1;
    }
    return fd;
#endif
}

inline int accept_socket(int lfd, sockaddr* sa, socklen_t* len) noexcept
{
#if FAPWS_REACTOR_EPOLL
    return ::accept4(lfd, sa, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    int fd = ::accept(lfd, sa, len);
    if (fd >= 0 && !prepare_socket(fd)) {
        ::close(fd);
        errno = ECONNABORTED;  // skipped like a connection reset before accept
        return -1;
    }
    return fd;
#endif
}

// Up to n bytes of file from *off to sock; advances *off by what was sent.
// Returns what send(2) would: the count, or -1 with errno (EAGAIN when the
// socket is full). Linux: sendfile(2). Elsewhere: pread into a buffer and
// send, which copies through user space once.
inline ssize_t send_file(int sock, int file, off_t* off, std::size_t n) noexcept
{
#if FAPWS_REACTOR_EPOLL
    return ::sendfile(sock, file, off, n);
#else
    char buf[64 * 1024];
    ssize_t got = ::pread(file, buf, n < sizeof buf ? n : sizeof buf, *off);
    if (got <= 0)
        return got;  // 0: the file shrank under us, as sendfile says it
    ssize_t w = ::send(sock, buf, static_cast<std::size_t>(got), send_flags);
    if (w > 0)
        *off += w;
    return w;
#endif
}

// Abstract UNIX socket names ("unix:@name") exist on Linux only.
inline constexpr bool abstract_sockets =
#ifdef __linux__
    true;
#else
    false;
#endif

}  // namespace fapws::detail
