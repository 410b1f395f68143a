// A naive Beast coroutine SSE server, for the fan-out comparison (issue #10):
// what the Beast and Asio coroutine examples lead to. Each subscriber is a
// coroutine with a queue and a timer used as its wake-up; GET /publish queues
// one event for every subscriber.
//   beast_sse PORT      GET /events subscribes; GET /publish sends one event
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <deque>
#include <memory>
#include <set>
#include <string>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using net::use_awaitable;

struct subscriber {
    explicit subscriber(net::any_io_executor ex) : wake(ex, net::steady_timer::time_point::max()) {}
    std::deque<std::string> queue;
    net::steady_timer wake;
};

std::set<std::shared_ptr<subscriber>> subscribers;
long published = 0;

net::awaitable<void> serve(tcp::socket sock)
{
    beast::tcp_stream stream(std::move(sock));
    beast::flat_buffer buf;
    for (;;) {
        http::request<http::string_body> req;
        beast::error_code ec;
        co_await http::async_read(stream, buf, req, net::redirect_error(use_awaitable, ec));
        if (ec)
            co_return;
        if (req.target() == "/events") {
            http::response<http::empty_body> head{http::status::ok, req.version()};
            head.set(http::field::content_type, "text/event-stream");
            head.chunked(true);
            http::response_serializer<http::empty_body> sr{head};
            co_await http::async_write_header(stream, sr, net::redirect_error(use_awaitable, ec));
            if (ec)
                co_return;
            auto me = std::make_shared<subscriber>(co_await net::this_coro::executor);
            subscribers.insert(me);
            while (!ec) {
                if (me->queue.empty()) {
                    co_await me->wake.async_wait(net::redirect_error(use_awaitable, ec));
                    ec = {};
                    continue;
                }
                std::string event = std::move(me->queue.front());
                me->queue.pop_front();
                co_await net::async_write(stream, http::make_chunk(net::buffer(event)),
                                          net::redirect_error(use_awaitable, ec));
            }
            subscribers.erase(me);
            co_return;
        }
        http::response<http::string_body> res{http::status::ok, req.version()};
        res.keep_alive(req.keep_alive());
        if (req.target() == "/publish") {
            std::string event = "data: event " + std::to_string(++published) + "\n\n";
            for (auto& s : subscribers) {
                s->queue.push_back(event);
                s->wake.cancel();
            }
            res.body() = std::to_string(subscribers.size()) + "\n";
        } else {
            res.body() = "Hello, World!";
        }
        res.prepare_payload();
        co_await http::async_write(stream, res, net::redirect_error(use_awaitable, ec));
        if (ec || !res.keep_alive())
            co_return;
    }
}

net::awaitable<void> listen(tcp::acceptor& a)
{
    for (;;) {
        tcp::socket s = co_await a.async_accept(use_awaitable);
        net::co_spawn(a.get_executor(), serve(std::move(s)), net::detached);
    }
}

int main(int, char** argv)
{
    net::io_context ioc{1};
    tcp::acceptor a(ioc, {net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(std::stoi(argv[1]))});
    net::co_spawn(ioc, listen(a), net::detached);
    ioc.run();
}
