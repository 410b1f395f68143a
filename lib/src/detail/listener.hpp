// A listening socket and its accept loop. Private.
#pragma once

#include "server_impl.hpp"

#include <string>

#include <sys/socket.h>

namespace fapws::detail {

class listener {
public:
    listener(server::impl& srv, int fd, listener_info info, std::string unlink_path);
    ~listener();

    void start();
    void close() noexcept;
    const listener_info& info() const noexcept { return info_; }
    int fd() noexcept { return sock_.is_open() ? sock_.native_handle() : -1; }

private:
    void on_ready(error_code ec);

    server::impl& srv_;
    descriptor sock_;
    listener_info info_;
    std::string unlink_path_;  // a UNIX socket file we created
    int owner_pid_;            // only the process that created it unlinks it:
                               // a pre-forked worker that stops must not
    steady_timer pause_;       // backs off when out of descriptors
};

// Opens, binds and listens; throws setup_error with a readable message.
int open_tcp(const std::string& host, std::uint16_t port, const listen_options& opt, int backlog,
             listener_info& info);
int open_unix(const std::string& path, int backlog, listener_info& info, std::string& unlink_path);
int adopt_fd(int fd, listener_info& info);
// The peer's IPv4 address (network order) and port, as connections keep
// them; 0 and 0 for other peers (request::remote_addr asks getpeername).
void peer_of(const sockaddr_storage& ss, std::uint32_t& v4, std::uint16_t& port) noexcept;

}  // namespace fapws::detail
