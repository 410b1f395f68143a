#include <fapws/defer_queue.hpp>
#include <fapws/server.hpp>

#include <boost/asio/post.hpp>
#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

using namespace fapws;

namespace {
config quiet(std::size_t limit = 10'000)
{
    config c;
    c.handle_signals = false;
    c.defer_limit = limit;
    return c;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(defer_suite)

BOOST_AUTO_TEST_CASE(fifo_and_combined)
{
    defer_queue q(10);
    std::string order;
    BOOST_TEST(q.push([&] { order += 'a'; }));
    BOOST_TEST(q.push([&] { order += 'b'; }, "k"));
    BOOST_TEST(!q.push([&] { order += 'X'; }, "k"));  // already queued
    BOOST_TEST(q.push([&] { order += 'c'; }));
    BOOST_TEST(q.size() == 3u);
    while (q.run_one()) {
    }
    BOOST_TEST(order == "abc");
    BOOST_TEST(q.push([&] { order += 'd'; }, "k"));  // ran, so a new one is queued
}

BOOST_AUTO_TEST_CASE(limit_is_an_error_not_a_drop)
{
    defer_queue q(2);
    q.push([] {});
    q.push([] {});
    BOOST_CHECK_THROW(q.push([] {}), defer_queue_full);
    BOOST_TEST(q.size() == 2u);
}

BOOST_AUTO_TEST_CASE(deferred_tasks_wait_for_ready_handlers)
{
    server srv(quiet());
    std::vector<std::string> log;
    // A chain of ready handlers: each posts the next. The deferred tasks must
    // run only after the chain ends, in FIFO order.
    struct chain {
        server* s;
        std::vector<std::string>* log;
        int left;
        void operator()()
        {
            log->push_back("io");
            if (--left > 0)
                boost::asio::post(s->context(), chain{s, log, left});
        }
    };
    boost::asio::post(srv.context(), [&] {
        srv.defer([&] { log.push_back("d1"); });
        srv.defer([&] { log.push_back("d2"); });
        srv.defer([&] { log.push_back("d3"); srv.stop_now(); });
        boost::asio::post(srv.context(), chain{&srv, &log, 100});
    });
    srv.run();
    BOOST_REQUIRE(log.size() == 103u);
    for (int i = 0; i < 100; ++i)
        BOOST_TEST(log[i] == "io");
    BOOST_TEST(log[100] == "d1");
    BOOST_TEST(log[101] == "d2");
    BOOST_TEST(log[102] == "d3");
}

BOOST_AUTO_TEST_CASE(server_defer_limit_and_errors)
{
    server srv(quiet(3));
    int ran = 0;
    srv.defer([&] { ++ran; throw std::runtime_error("task failed"); });
    srv.defer([&] { ++ran; });
    srv.defer([&] { ++ran; srv.stop_now(); });
    BOOST_CHECK_THROW(srv.defer([] {}), defer_queue_full);
    BOOST_TEST(srv.defer_queue_size() == 3u);
    srv.run();
    BOOST_TEST(ran == 3);
    BOOST_TEST(srv.defer_queue_size() == 0u);
    BOOST_TEST(srv.counters().task_errors == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
