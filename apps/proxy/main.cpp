// An asynchronous proxy: each request is forwarded to an upstream with
// Beast's HTTP client on the same loop, as a coroutine route; the loop serves
// others while the upstream answers, and a client that leaves cancels it.
//   proxy UPSTREAM_HOST:PORT [LISTEN]     (default listen 127.0.0.1:8080)
#include <fapws/server.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <chrono>
#include <iostream>
#include <string>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

int main(int argc, char** argv)
{
    if (argc < 2) {
        std::cerr << "usage: proxy UPSTREAM_HOST:PORT [LISTEN]\n";
        return 2;
    }
    std::string up(argv[1]);
    auto colon = up.rfind(':');
    if (colon == std::string::npos) {
        std::cerr << "proxy: upstream must be HOST:PORT\n";
        return 2;
    }
    std::string host = up.substr(0, colon), port = up.substr(colon + 1);
    try {
        fapws::server srv;
        srv.route("/", [host, port](fapws::request req) -> net::awaitable<fapws::response> {
            auto ex = co_await net::this_coro::executor;
            net::ip::tcp::resolver resolver(ex);
            beast::tcp_stream stream(ex);
            stream.expires_after(std::chrono::seconds(30));
            co_await stream.async_connect(co_await resolver.async_resolve(host, port, net::use_awaitable),
                                          net::use_awaitable);
            http::request<http::string_body> ask{http::string_to_verb(req.method()), req.target(), 11};
            ask.set(http::field::host, host);
            for (const auto& f : req.fields())
                if (!beast::iequals(f.name, "host") && !beast::iequals(f.name, "connection"))
                    ask.insert(f.name, f.value);
            std::string body(req.body().size(), '\0');
            req.body().read_at(0, body.data(), body.size());
            ask.body() = std::move(body);
            ask.prepare_payload();
            co_await http::async_write(stream, ask, net::use_awaitable);
            beast::flat_buffer buf;
            http::response<http::string_body> got;
            co_await http::async_read(stream, buf, got, net::use_awaitable);
            fapws::response res;
            res.status(static_cast<int>(got.result_int()));
            for (const auto& f : got)
                if (f.name() != http::field::content_length && f.name() != http::field::transfer_encoding &&
                    f.name() != http::field::connection && f.name() != http::field::date &&
                    f.name() != http::field::server)
                    res.header(f.name_string(), f.value());
            res.body(std::move(got.body()));
            co_return res;
        });
        auto where = srv.listen(argc > 2 ? argv[2] : "127.0.0.1:8080");
        fapws::log_info("proxying http://" + where.address + ":" + std::to_string(where.port) + "/ to " + up);
        srv.run();
    } catch (const fapws::setup_error& e) {
        std::cerr << "proxy: " << e.what() << '\n';
        return 2;
    }
}
