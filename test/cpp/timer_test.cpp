#include <fapws/timer.hpp>
#include <fapws/server.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <vector>

using namespace fapws;
using namespace std::chrono_literals;

namespace {
config quiet()
{
    config c;
    c.handle_signals = false;
    return c;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(timer_suite)

BOOST_AUTO_TEST_CASE(periodic_timer_fires_every_interval)
{
    server srv(quiet());
    int ticks = 0;
    auto t0 = std::chrono::steady_clock::now();
    srv.add_timer(20ms, [&] {
        if (++ticks == 5)
            srv.stop_now();
    });
    srv.run();
    auto elapsed = std::chrono::steady_clock::now() - t0;
    BOOST_TEST(ticks == 5);
    BOOST_TEST((elapsed >= 100ms));
}

BOOST_AUTO_TEST_CASE(stop_and_restart)
{
    server srv(quiet());
    int a = 0, b = 0;
    timer ta = srv.add_timer(10ms, [&] { ++a; });
    BOOST_TEST(ta.running());
    BOOST_TEST((ta.interval() == 10ms));
    srv.add_timer(35ms, [&] {
        ++b;
        if (b == 1) {
            ta.stop();  // a stops at about 3
        } else if (b == 2) {
            BOOST_TEST(!ta.running());
            BOOST_TEST(a <= 4);
            ta.restart();
        } else if (b == 4) {
            srv.stop_now();
        }
    });
    srv.run();
    BOOST_TEST(a >= 5);  // it ran again after restart
}

BOOST_AUTO_TEST_CASE(throwing_timer_is_logged_and_keeps_running)
{
    server srv(quiet());
    int n = 0;
    srv.add_timer(5ms, [&] {
        if (++n == 3)
            srv.stop_now();
        throw std::runtime_error("tick failed");
    });
    srv.run();
    BOOST_TEST(n == 3);
    BOOST_TEST(srv.counters().task_errors == 3u);
}

BOOST_AUTO_TEST_CASE(handle_outliving_server_is_harmless)
{
    timer t;
    {
        server srv(quiet());
        t = srv.add_timer(1s, [] {});
    }
    t.stop();
    t.restart();
    BOOST_TEST(!t.running());
}

BOOST_AUTO_TEST_SUITE_END()
