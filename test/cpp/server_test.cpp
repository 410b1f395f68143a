#include <fapws/server.hpp>

#include "support.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace fapws;
using namespace fapws::test;
using namespace std::chrono_literals;
namespace net = boost::asio;

namespace {

config quiet()
{
    config c;
    c.handle_signals = false;
    return c;
}

// An asynchronous answer: `body` after `delay`, from a timer on the loop.
void answer_later(responder r, std::chrono::milliseconds delay, std::string body)
{
    auto t = std::make_shared<net::steady_timer>(r.get_executor(), delay);
    t->async_wait([t, r = std::move(r), body = std::move(body)](error_code) mutable {
        response res;
        res.body(std::move(body));
        r.send(std::move(res));
    });
}

// An embedder's io_context, run by its own thread: fapws is one of its users.
struct embedder {
    net::io_context ioc;
    server srv{ioc, quiet()};
    std::uint16_t port = 0;
    std::thread thread;
    std::atomic<int> ticks{0};
    net::steady_timer tick{ioc};
    bool ticking = true;  // read and written on the loop only

    explicit embedder(std::function<void(server&)> setup)
    {
        setup(srv);
        port = srv.listen("127.0.0.1:0").port;
        srv.start();
        every_10ms();
        thread = std::thread([this] { ioc.run(); });
    }
    void every_10ms()
    {
        tick.expires_after(10ms);
        tick.async_wait([this](error_code ec) {
            if (ec || !ticking)
                return;
            ++ticks;
            every_10ms();
        });
    }
    // async_stop from another thread; the embedder stops its own timer, and
    // then its run() must return: nothing of ours is left in its io_context.
    // cancel() alone is not enough: a wait that already expired has its
    // handler queued with success and would arm the timer again.
    void stop()
    {
        auto done = srv.async_stop(net::use_future);
        BOOST_TEST((done.wait_for(5s) == std::future_status::ready));
        net::post(ioc, [this] {
            ticking = false;
            tick.cancel();
        });
        thread.join();
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(server_suite)

BOOST_AUTO_TEST_CASE(a_server_on_the_embedders_io_context_serves_beside_its_work)
{
    std::atomic<int> deferred{0};
    embedder e([&](server& s) {
        hello(s);
        s.route("/slow", [](responder r) { answer_later(std::move(r), 50ms, "later\n"); });
        s.route("/defer", [&s, &deferred](const request&, response& res) {
            s.defer([&deferred] { ++deferred; });
            res.body("queued\n");
        });
    });
    client c(e.port);
    for (int i = 0; i < 50; ++i)
        BOOST_TEST(c.get("/").body == "Hello, World!");
    BOOST_TEST(c.get("/slow").body == "later\n");
    BOOST_TEST(c.get("/defer").body == "queued\n");
    std::this_thread::sleep_for(30ms);
    BOOST_TEST(deferred.load() == 1);
    BOOST_TEST(e.ticks.load() > 0);  // the embedder's own timer ran meanwhile
    e.stop();
    BOOST_TEST(e.srv.counters().connections_open == 0u);
}

BOOST_AUTO_TEST_CASE(async_stop_waits_for_a_request_in_flight_and_then_the_embedders_run_returns)
{
    embedder e([](server& s) {
        s.route("/slow", [](responder r) { answer_later(std::move(r), 100ms, "finished\n"); });
    });
    client c(e.port);
    c.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    std::this_thread::sleep_for(20ms);
    auto t0 = std::chrono::steady_clock::now();
    std::thread stopper([&] { e.stop(); });
    reply r = c.read();
    BOOST_TEST(r.body == "finished\n");
    BOOST_TEST(r.headers["connection"] == "close");
    stopper.join();  // run() returned: every wait of ours was cancelled
    BOOST_TEST((std::chrono::steady_clock::now() - t0 < 2s));
}

BOOST_AUTO_TEST_CASE(run_and_start_refuse_the_wrong_kind_of_server)
{
    net::io_context ioc;
    server mine(ioc, quiet());
    BOOST_CHECK_THROW(mine.run(), std::logic_error);
    server own(quiet());
    BOOST_CHECK_THROW(own.start(), std::logic_error);
}

// A connection driven over a socketpair by the test's own thread: no
// listener, no server thread; the test runs the io_context itself.
BOOST_AUTO_TEST_CASE(a_socketpair_end_is_served_with_no_listener_and_no_thread)
{
    net::io_context ioc;
    server srv(ioc, quiet());
    hello(srv);
    srv.route("/later", [](responder r) { answer_later(std::move(r), 20ms, "later\n"); });
    srv.start();
    int sv[2];
    BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    BOOST_TEST(srv.serve_socket(sv[0]));
    ::fcntl(sv[1], F_SETFL, ::fcntl(sv[1], F_GETFL) | O_NONBLOCK);

    // Pipelined: a synchronous answer, an asynchronous one, a synchronous
    // one, in one write; they come back in request order.
    const std::string reqs = "GET / HTTP/1.1\r\nHost: t\r\n\r\n"
                             "GET /later HTTP/1.1\r\nHost: t\r\n\r\n"
                             "GET /again HTTP/1.1\r\nHost: t\r\n\r\n";
    BOOST_REQUIRE(::write(sv[1], reqs.data(), reqs.size()) == static_cast<ssize_t>(reqs.size()));
    std::string got;
    auto count = [&](std::string_view what) {
        std::size_t n = 0;
        for (auto p = got.find(what); p != std::string::npos; p = got.find(what, p + 1))
            ++n;
        return n;
    };
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (count("HTTP/1.1 200") < 3 && std::chrono::steady_clock::now() < deadline) {
        ioc.run_for(5ms);
        char buf[4096];
        for (ssize_t n; (n = ::read(sv[1], buf, sizeof buf)) > 0;)
            got.append(buf, static_cast<std::size_t>(n));
    }
    BOOST_TEST(count("HTTP/1.1 200") == 3u);
    auto first = got.find("X-Path: /\r\n");
    auto later = got.find("later\n");
    auto again = got.find("X-Path: /again");
    BOOST_TEST((first != std::string::npos && later != std::string::npos && again != std::string::npos));
    BOOST_TEST((first < later && later < again));
    BOOST_TEST(srv.counters().connections_open == 1u);

    // The client leaves: the connection closes; then the stop leaves
    // nothing of ours in the io_context, so run() returns.
    ::close(sv[1]);
    deadline = std::chrono::steady_clock::now() + 5s;
    while (srv.counters().connections_open != 0 && std::chrono::steady_clock::now() < deadline)
        ioc.run_for(5ms);
    BOOST_TEST(srv.counters().connections_open == 0u);
    bool stopped = false;
    srv.async_stop([&] { stopped = true; });
    ioc.restart();
    ioc.run();
    BOOST_TEST(stopped);
    BOOST_TEST(!srv.serve_socket(::dup(0)));  // stopped: refused, and closed
}

BOOST_AUTO_TEST_SUITE_END()
