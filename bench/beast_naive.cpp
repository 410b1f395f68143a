// A naive Beast server: what the Beast examples lead to (http::request with a
// string body, a fresh response per request, shared_ptr sessions, a flat
// buffer kept per connection). The ceiling of the easy path, for comparison.
//   beast_naive PORT
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <memory>
#include <string>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

class session : public std::enable_shared_from_this<session> {
public:
    explicit session(tcp::socket s) : stream_(std::move(s)) {}
    void run() { do_read(); }

private:
    void do_read()
    {
        req_ = {};
        http::async_read(stream_, buffer_, req_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            self->on_read(ec);
        });
    }
    void on_read(beast::error_code ec)
    {
        if (ec)
            return;
        auto res = std::make_shared<http::response<http::string_body>>(http::status::ok, req_.version());
        res->set(http::field::server, "beast");
        res->set(http::field::content_type, "text/plain");
        res->keep_alive(req_.keep_alive());
        res->body() = "Hello, World!";
        res->prepare_payload();
        http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, std::size_t) {
            if (!ec && res->keep_alive())
                self->do_read();
        });
    }
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    http::request<http::string_body> req_;
};

void do_accept(tcp::acceptor& a)
{
    a.async_accept([&a](beast::error_code ec, tcp::socket s) {
        if (!ec)
            std::make_shared<session>(std::move(s))->run();
        do_accept(a);
    });
}

int main(int, char** argv)
{
    net::io_context ioc{1};
    tcp::acceptor a(ioc, {net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(std::stoi(argv[1]))});
    do_accept(a);
    ioc.run();
}
