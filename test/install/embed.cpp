// An embedder's program, built against an installed or subproject fapws
// (test/install/run.sh): an asynchronous route answered by a timer and a
// coroutine route, checked over loopback. Prints "embed: ok" and exits 0.
#include <fapws/server.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

namespace net = boost::asio;
using namespace std::chrono_literals;

static std::string get(std::uint16_t port, const std::string& target)
{
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
        return "connect failed";
    std::string ask = "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    ::send(fd, ask.data(), ask.size(), 0);
    std::string got;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0)
        got.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    auto body = got.find("\r\n\r\n");
    return body == std::string::npos ? got : got.substr(body + 4);
}

int main()
{
    fapws::config cfg;
    cfg.handle_signals = false;
    fapws::server srv(cfg);
    srv.route("/later", [](fapws::responder r) {
        auto t = std::make_shared<net::steady_timer>(r.get_executor(), 50ms);
        t->async_wait([t, r = std::move(r)](fapws::error_code) mutable {
            fapws::response res;
            res.body("later\n");
            r.send(std::move(res));
        });
    });
    srv.route("/co", [](fapws::request req) -> net::awaitable<fapws::response> {
        net::steady_timer t(co_await net::this_coro::executor, 10ms);
        co_await t.async_wait(net::use_awaitable);
        fapws::response res;
        res.body("co " + std::string(req.path()) + "\n");
        co_return res;
    });
    auto port = srv.listen("127.0.0.1:0").port;
    std::thread loop([&] { srv.run(); });
    std::string a = get(port, "/later"), b = get(port, "/co");
    srv.stop();
    loop.join();
    if (a != "later\n" || b != "co /co\n") {
        std::printf("embed: FAILED: [%s] [%s]\n", a.c_str(), b.c_str());
        return 1;
    }
    std::printf("embed: ok\n");
    return 0;
}
