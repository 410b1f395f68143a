#include "detail/listener.hpp"

#include "detail/server_impl.hpp"
#include "detail/sys.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace fapws::detail {

namespace {

[[noreturn]] void fail(const std::string& what, int err)
{
    throw setup_error(what + ": " + std::strerror(err));
}

void set_int(int fd, int level, int opt, int value)
{
    ::setsockopt(fd, level, opt, &value, sizeof value);
}

std::string addr_string(const sockaddr* sa)
{
    char buf[INET6_ADDRSTRLEN] = "";
    if (sa->sa_family == AF_INET)
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
    else if (sa->sa_family == AF_INET6)
        ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
    return buf;
}

void describe(int fd, listener_info& info)
{
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        info.address = addr_string(reinterpret_cast<sockaddr*>(&ss));
        info.port = ntohs(reinterpret_cast<sockaddr_in&>(ss).sin_port);
    } else if (ss.ss_family == AF_INET6) {
        info.address = addr_string(reinterpret_cast<sockaddr*>(&ss));
        info.port = ntohs(reinterpret_cast<sockaddr_in6&>(ss).sin6_port);
    } else if (ss.ss_family == AF_UNIX) {
        auto& un = reinterpret_cast<sockaddr_un&>(ss);
        std::size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
        std::string path(un.sun_path, n);
        if (!path.empty() && path[0] == '\0')
            path[0] = '@';
        while (!path.empty() && path.back() == '\0')
            path.pop_back();
        info.address = "unix:" + path;
        info.port = 0;
        info.unix_socket = true;
    }
}

}  // namespace

int open_tcp(const std::string& host, std::uint16_t port, const listen_options& opt, int backlog,
             listener_info& info)
{
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    std::string service = std::to_string(port);
    const bool any = host.empty() || host == "*";
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(any ? "::" : host.c_str(), service.c_str(), &hints, &res);
    if (rc != 0 && any)
        rc = ::getaddrinfo("0.0.0.0", service.c_str(), &hints, &res);
    if (rc != 0)
        throw setup_error("cannot resolve '" + host + "': " + ::gai_strerror(rc));
    int err = 0;
    int fd = -1;
    for (addrinfo* a = res; a; a = a->ai_next) {
        fd = open_socket(a->ai_family);
        if (fd < 0) {
            err = errno;
            continue;
        }
        set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
        if (opt.reuse_port)
            set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
        if (a->ai_family == AF_INET6)
            set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, any ? 0 : 1);
        // Accepted sockets inherit TCP_NODELAY on Linux: responses leave in
        // whole writes already, so Nagle would only delay the last segment.
        set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
        if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, backlog) == 0)
            break;
        err = errno;
        ::close(fd);
        fd = -1;
    }
    ::freeaddrinfo(res);
    if (fd < 0) {
        std::string where = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + service;
        fail("cannot listen on " + where, err);
    }
    describe(fd, info);
    info.unix_socket = false;
    info.url_scheme = opt.url_scheme;
    return fd;
}

int open_unix(const std::string& path, int backlog, listener_info& info, std::string& unlink_path)
{
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof un.sun_path)
        throw setup_error("invalid UNIX socket path '" + path + "'");
    std::memcpy(un.sun_path, path.data(), path.size());
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
    const bool abstract = path[0] == '@';
    if (abstract && !abstract_sockets)
        throw setup_error("cannot listen on unix:" + path + ": abstract socket names exist on Linux only");
    if (abstract) {
        un.sun_path[0] = '\0';
    } else {
        len += 1;
        struct stat st;
        if (::lstat(path.c_str(), &st) == 0) {
            if (!S_ISSOCK(st.st_mode))
                throw setup_error("cannot listen on unix:" + path + ": exists and is not a socket");
            // A socket file left by a dead server is removed; a live one is in use.
#ifdef SOCK_CLOEXEC
            int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
#else
            int probe = ::socket(AF_UNIX, SOCK_STREAM, 0);  // macOS: closed below at once
#endif
            bool live = probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&un), len) == 0;
            if (probe >= 0)
                ::close(probe);
            if (live)
                throw setup_error("cannot listen on unix:" + path + ": " + std::strerror(EADDRINUSE));
            ::unlink(path.c_str());
        }
    }
    int fd = open_socket(AF_UNIX);
    if (fd < 0)
        fail("cannot create a UNIX socket", errno);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&un), len) != 0 || ::listen(fd, backlog) != 0) {
        int err = errno;
        ::close(fd);
        fail("cannot listen on unix:" + path, err);
    }
    if (!abstract)
        unlink_path = path;
    info.address = "unix:" + path;
    info.port = 0;
    info.unix_socket = true;
    return fd;
}

int adopt_fd(int fd, listener_info& info)
{
    int accepting = 0;
    socklen_t len = sizeof accepting;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0)
        fail("fd " + std::to_string(fd) + " is not a socket", errno);
    if (!accepting)
        throw setup_error("fd " + std::to_string(fd) + " is not a listening socket");
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    describe(fd, info);
    return fd;
}

listener::listener(server::impl& srv, int fd, listener_info info, std::string unlink_path)
    : srv_(srv), sock_(srv.ioc_.get_executor(), fd), info_(std::move(info)),
      unlink_path_(std::move(unlink_path)), owner_pid_(::getpid()), pause_(srv.ioc_.get_executor())
{
}

listener::~listener()
{
    close();
}

void listener::start()
{
    sock_.async_wait(net::posix::descriptor_base::wait_read, [this](error_code ec) { on_ready(ec); });
}

void listener::close() noexcept
{
    error_code ec;
    pause_.cancel();
    if (sock_.is_open()) {
        sock_.close(ec);
        if (!unlink_path_.empty() && ::getpid() == owner_pid_)
            ::unlink(unlink_path_.c_str());
    }
}

void peer_of(const sockaddr_storage& ss, std::uint32_t& v4, std::uint16_t& port) noexcept
{
    v4 = 0;
    port = 0;
    if (ss.ss_family == AF_INET) {
        auto& in = reinterpret_cast<const sockaddr_in&>(ss);
        v4 = in.sin_addr.s_addr;
        port = ntohs(in.sin_port);
    } else if (ss.ss_family == AF_INET6) {
        auto& in6 = reinterpret_cast<const sockaddr_in6&>(ss);
        if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
            std::memcpy(&v4, in6.sin6_addr.s6_addr + 12, 4);
            port = ntohs(in6.sin6_port);
        }
    }
}

void listener::on_ready(error_code ec)
{
    if (ec || srv_.stopping_)
        return;
    const int lfd = sock_.native_handle();
    // Take a batch, then let the loop serve what is already connected.
    for (int i = 0; i < 64; ++i) {
        sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept_socket(lfd, reinterpret_cast<sockaddr*>(&ss), &len);
        if (fd < 0) {
            int err = errno;
            if (err == EAGAIN)
                break;
            if (err == EINTR || err == ECONNABORTED || err == EPROTO)
                continue;
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                ++srv_.stats_.io_errors;
                log_error(std::string("accept: ") + std::strerror(err) + "; pausing accepts for 100 ms");
                pause_.expires_after(std::chrono::milliseconds(100));
                pause_.async_wait([this](error_code e) {
                    if (!e)
                        start();
                });
                return;
            }
            log_error(std::string("accept: ") + std::strerror(err));
            break;
        }
        std::uint32_t v4 = 0;
        std::uint16_t port = 0;
        peer_of(ss, v4, port);
        try {
            auto* c = new connection(srv_, fd, info_, v4, port);
            c->start();
        } catch (const std::exception& e) {
            ::close(fd);
            log_error(std::string("cannot register connection: ") + e.what());
        }
    }
    start();
}

}  // namespace fapws::detail

namespace fapws {

// ------------------------------------------------------------ listen specs

listener_info server::listen(std::string_view spec, const listen_options& opt)
{
    std::string s(spec);
    if (s.rfind("unix:", 0) == 0)
        return listen_unix(s.substr(5), opt);
    if (s.rfind("fd:", 0) == 0 || s.rfind("fd://", 0) == 0) {
        std::string n = s.substr(s.find_first_of("0123456789") == std::string::npos ? s.size() : s.find_first_of("0123456789"));
        char* end = nullptr;
        long fd = std::strtol(n.c_str(), &end, 10);
        if (n.empty() || *end || fd < 0)
            throw setup_error("invalid listen address '" + s + "' (expected fd:N)");
        return listen_fd(static_cast<int>(fd), opt);
    }
    std::string host, port;
    if (!s.empty() && s[0] == '[') {
        auto close = s.find(']');
        if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':')
            throw setup_error("invalid listen address '" + s + "' (expected [IPv6]:PORT)");
        host = s.substr(1, close - 1);
        port = s.substr(close + 2);
    } else {
        auto colon = s.rfind(':');
        if (colon == std::string::npos)
            throw setup_error("invalid listen address '" + s + "' (expected HOST:PORT, unix:PATH or fd:N)");
        host = s.substr(0, colon);
        port = s.substr(colon + 1);
    }
    char* end = nullptr;
    long p = std::strtol(port.c_str(), &end, 10);
    if (port.empty() || *end || p < 0 || p > 65535)
        throw setup_error("invalid port '" + port + "' in '" + s + "'");
    return listen_tcp(host, static_cast<std::uint16_t>(p), opt);
}

listener_info server::listen_tcp(const std::string& host, std::uint16_t port, const listen_options& opt)
{
    listener_info info;
    int fd = detail::open_tcp(host, port, opt, opt.backlog > 0 ? opt.backlog : impl_->cfg_.backlog, info);
    info.proxy_protocol = opt.proxy_protocol;
    impl_->listeners_.push_back(std::make_unique<detail::listener>(*impl_, fd, info, std::string()));
    if (impl_->running_)
        impl_->listeners_.back()->start();
    return info;
}

listener_info server::listen_unix(const std::string& path, const listen_options& opt)
{
    listener_info info;
    std::string unlink_path;
    int fd = detail::open_unix(path, opt.backlog > 0 ? opt.backlog : impl_->cfg_.backlog, info, unlink_path);
    info.url_scheme = opt.url_scheme;
    info.proxy_protocol = opt.proxy_protocol;
    impl_->listeners_.push_back(std::make_unique<detail::listener>(*impl_, fd, info, unlink_path));
    if (impl_->running_)
        impl_->listeners_.back()->start();
    return info;
}

listener_info server::listen_fd(int fd, const listen_options& opt)
{
    listener_info info;
    detail::adopt_fd(fd, info);
    info.url_scheme = opt.url_scheme;
    info.proxy_protocol = opt.proxy_protocol;
    if (info.address.empty())
        info.address = "fd:" + std::to_string(fd);
    impl_->listeners_.push_back(std::make_unique<detail::listener>(*impl_, fd, info, std::string()));
    if (impl_->running_)
        impl_->listeners_.back()->start();
    return info;
}

bool server::serve_socket(int fd)
{
    impl& s = *impl_;
    if (s.stopping_ || s.stopped_) {
        ::close(fd);
        return false;
    }
    if (!detail::prepare_socket(fd)) {
        int err = errno;
        ::close(fd);
        throw setup_error(std::string("serve_socket: ") + std::strerror(err));
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
        ss.ss_family = AF_UNSPEC;  // an unnamed socketpair end, on some systems
    std::uint32_t v4 = 0;
    std::uint16_t port = 0;
    detail::peer_of(ss, v4, port);
    const bool tcp = ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
    auto* c = new detail::connection(s, fd, tcp ? s.served_tcp_ : s.served_unix_, v4, port);
    c->start();
    return true;
}

}  // namespace fapws
