// Test support: the real server on its own thread, blocking clients on real
// loopback sockets. The server's state is touched only by its thread; the test
// thread talks HTTP to it and calls the thread-safe stop().
#pragma once

#include <fapws/server.hpp>

#include <boost/asio/post.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

namespace fapws::test {

class running_server {
public:
    explicit running_server(config cfg = quiet(), std::function<void(server&)> setup = {},
                            std::string where = "127.0.0.1:0")
        : srv_(std::move(cfg))
    {
        if (setup)
            setup(srv_);
        info_ = srv_.listen(where);
        thread_ = std::thread([this] { srv_.run(); });
    }
    ~running_server()
    {
        srv_.stop();
        thread_.join();
    }
    static config quiet()
    {
        config c;
        c.handle_signals = false;
        return c;
    }
    std::uint16_t port() const { return info_.port; }
    server& srv() { return srv_; }
    // A copy of the counters, taken on the loop thread (they are the
    // loop's: reading them from the test thread would be a data race).
    stats counters()
    {
        std::promise<stats> got;
        boost::asio::post(srv_.context(), [&] { got.set_value(srv_.counters()); });
        return got.get_future().get();
    }

private:
    server srv_;
    listener_info info_;
    std::thread thread_;
};

struct reply {
    int status = 0;
    std::string head;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
    bool closed = false;  // the server closed after it
};

class client {
public:
    explicit client(std::uint16_t port, const char* addr = "127.0.0.1")
    {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(port);
        ::inet_pton(AF_INET, addr, &sa.sin_addr);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
            throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
        timeouts();
    }
    explicit client(const std::string& unix_path)
    {
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un un{};
        un.sun_family = AF_UNIX;
        std::memcpy(un.sun_path, unix_path.data(), unix_path.size());
        socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + unix_path.size());
        if (unix_path[0] == '@')
            un.sun_path[0] = '\0';
        else
            len += 1;
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&un), len) != 0)
            throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
        timeouts();
    }
    ~client()
    {
        if (fd_ >= 0)
            ::close(fd_);
    }
    client(const client&) = delete;

    void send(const std::string& s)
    {
        std::size_t done = 0;
        while (done < s.size()) {
            ssize_t w = ::send(fd_, s.data() + done, s.size() - done, MSG_NOSIGNAL);
            if (w <= 0)
                throw std::runtime_error("send failed");
            done += static_cast<std::size_t>(w);
        }
    }

    // Reads one response; HEAD responses have no body (pass head=true).
    reply read(bool head = false)
    {
        reply r;
        std::size_t end;
        while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
            if (!fill())
                throw std::runtime_error("connection closed before a response head: [" + buf_ + "]");
        r.head = buf_.substr(0, end + 4);
        buf_.erase(0, end + 4);
        r.status = std::stoi(r.head.substr(9, 3));
        std::size_t pos = r.head.find("\r\n") + 2;
        while (pos < r.head.size() - 2) {
            std::size_t eol = r.head.find("\r\n", pos);
            std::string line = r.head.substr(pos, eol - pos);
            auto colon = line.find(':');
            std::string name = line.substr(0, colon);
            for (auto& ch : name)
                ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            std::string value = line.substr(colon + 1);
            value.erase(0, value.find_first_not_of(' '));
            r.headers[name] = value;
            pos = eol + 2;
        }
        bool no_body = head || r.status == 204 || r.status == 304 || r.status < 200;
        if (no_body) {
        } else if (r.headers.count("content-length")) {
            std::size_t n = std::stoull(r.headers["content-length"]);
            while (buf_.size() < n)
                if (!fill())
                    throw std::runtime_error("short body");
            r.body = buf_.substr(0, n);
            buf_.erase(0, n);
        } else if (r.headers["transfer-encoding"] == "chunked") {
            for (;;) {
                std::size_t eol;
                while ((eol = buf_.find("\r\n")) == std::string::npos)
                    if (!fill())
                        throw std::runtime_error("short chunk");
                std::size_t n = std::stoull(buf_.substr(0, eol), nullptr, 16);
                while (buf_.size() < eol + 2 + n + 2)
                    if (!fill())
                        throw std::runtime_error("short chunk");
                r.body += buf_.substr(eol + 2, n);
                buf_.erase(0, eol + 2 + n + 2);
                if (n == 0)
                    break;
            }
        } else {
            while (fill()) {
            }
            r.body = buf_;
            buf_.clear();
            r.closed = true;
        }
        return r;
    }

    // What arrives next, raw: what was buffered, or one recv.
    std::string read_some()
    {
        if (buf_.empty() && !fill())
            throw std::runtime_error("connection closed");
        return std::exchange(buf_, std::string());
    }

    // True when the server closed the connection (EOF) within the timeout.
    bool closed_by_peer()
    {
        if (!buf_.empty())
            return false;
        return !fill();
    }

    reply get(const std::string& target, const std::string& extra = "")
    {
        send("GET " + target + " HTTP/1.1\r\nHost: t\r\n" + extra + "\r\n");
        return read();
    }

    int fd() const { return fd_; }

private:
    void timeouts()
    {
        timeval tv{5, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    bool fill()
    {
        char tmp[65536];
        ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            throw std::runtime_error("read timed out");
        if (n <= 0)
            return false;
        buf_.append(tmp, static_cast<std::size_t>(n));
        return true;
    }
    int fd_ = -1;
    std::string buf_;
};

inline void hello(server& s)
{
    s.route("/", [](const request& req, response& res) {
        res.header("Content-Type", "text/plain");
        res.header("X-Path", std::string(req.path()));
        res.body_ref("Hello, World!");
    });
}

}  // namespace fapws::test
