#include <fapws/server.hpp>

#include "support.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

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
        s.route("/slow", [](responder r) {
            auto t = std::make_shared<net::steady_timer>(r.get_executor(), 50ms);
            t->async_wait([t, r = std::move(r)](error_code) mutable {
                response res;
                res.body("later\n");
                r.send(std::move(res));
            });
        });
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
        s.route("/slow", [](responder r) {
            auto t = std::make_shared<net::steady_timer>(r.get_executor(), 100ms);
            t->async_wait([t, r = std::move(r)](error_code) mutable {
                response res;
                res.body("finished\n");
                r.send(std::move(res));
            });
        });
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

BOOST_AUTO_TEST_SUITE_END()
