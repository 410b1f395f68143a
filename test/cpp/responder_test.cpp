#include <fapws/responder.hpp>

#include "support.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/test/unit_test.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

using namespace fapws;
using namespace fapws::test;
using namespace std::chrono_literals;
namespace net = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace {

std::atomic<int> cancelled{0};

// Answers after `delay`, unless the client leaves first.
void answer_after(responder r, std::chrono::milliseconds delay, std::string text)
{
    auto t = std::make_shared<net::steady_timer>(r.get_executor(), delay);
    auto slot = r.cancellation_slot();
    t->async_wait(net::bind_cancellation_slot(slot, [t, r = std::move(r), text](error_code ec) mutable {
        if (ec) {
            ++cancelled;
            return;
        }
        response res;
        res.header("Content-Type", "text/plain");
        res.body(text);
        r.send(std::move(res));
    }));
}

// An event every 100 ms, n of them, then the end of the body. Handlers hold
// the ticker by shared_ptr, never the ticker itself: no cycle to leak.
struct ticker : std::enable_shared_from_this<ticker> {
    ticker(body_writer w, int n) : w(std::move(w)), timer(this->w.get_executor()), left(n) {}
    void wait()
    {
        timer.expires_after(100ms);
        timer.async_wait([self = shared_from_this()](error_code ec) {
            if (!ec)
                self->tick();
        });
    }
    void tick()
    {
        if (left-- == 0)
            return w.async_finish([self = shared_from_this()](error_code) {});
        w.async_write("data: " + std::to_string(++sent) + "\n\n", [self = shared_from_this()](error_code ec) {
            if (!ec)
                self->wait();
        });
    }
    body_writer w;
    net::steady_timer timer;
    int left, sent = 0;
};

// Writes as fast as the writer lets it: back-pressure must hold it.
struct flooder : std::enable_shared_from_this<flooder> {
    explicit flooder(body_writer w) : w(std::move(w)) {}
    void write()
    {
        w.async_write(block, [self = shared_from_this()](error_code ec) {
            if (!ec)
                self->write();
        });
    }
    body_writer w;
    std::string block = std::string(16 * 1024, 'f');
};

void async_routes(server& s)
{
    hello(s);
    s.route("/slow", [](responder r) { answer_after(std::move(r), 200ms, "slow\n"); });
    s.route("/slow-10s", [](responder r) { answer_after(std::move(r), 10s, "never\n"); });
    s.route("/co", [](request req) -> net::awaitable<response> {
        net::steady_timer t(co_await net::this_coro::executor, 50ms);
        co_await t.async_wait(net::use_awaitable);
        response res;
        res.body("co " + std::string(req.path()) + " " + std::to_string(req.body().size()) + "\n");
        co_return res;
    });
    s.route("/co-throw", [](request) -> net::awaitable<response> {
        co_await net::post(co_await net::this_coro::executor, net::use_awaitable);
        throw std::runtime_error("coroutine failure");
    });
    s.route("/throw", [](responder) { throw std::runtime_error("before the head"); });
    s.route("/drop", [](responder) {});
    s.route("/cut", [](responder r) {
        response head;
        error_code ec;
        auto w = std::make_shared<body_writer>(r.start_stream(std::move(head), ec));
        w->async_write("part of it\n", [w](error_code) mutable {
            *w = body_writer();  // dropped before async_finish: the body is cut
        });
    });
    s.route("/thread", [](responder r) {
        // A worker thread computes; the answer is sent from the loop.
        std::thread([r = std::move(r)]() mutable {
            std::this_thread::sleep_for(20ms);
            std::string result = "computed " + std::to_string(6 * 7) + "\n";
            auto ex = r.get_executor();
            net::post(ex, [r = std::move(r), result]() mutable {
                response res;
                res.body(result);
                r.send(std::move(res));
            });
        }).detach();
    });
    s.route("/events", [](responder r) {
        int n = r.req().query().empty() ? 10 : std::stoi(std::string(r.req().query()));
        response head;
        head.header("Content-Type", "text/event-stream");
        error_code ec;
        auto t = std::make_shared<ticker>(r.start_stream(std::move(head), ec), n);
        t->wait();
    });
    s.route("/flood", [](responder r) {
        response head;
        error_code ec;
        std::make_shared<flooder>(r.start_stream(std::move(head), ec))->write();
    });
}

// A pushed body as a pull source: it pauses while its queue is empty and a
// feeder resumes it. The feeder reaches it through `link`, which the
// source's destructor clears (the connection may drop it at any time).
struct queue_source;
struct queue_link {
    queue_source* src = nullptr;
    bool destroyed = false;
};
struct queue_source final : body_source {
    explicit queue_source(std::shared_ptr<queue_link> l) : link(std::move(l)) { link->src = this; }
    ~queue_source() override
    {
        link->src = nullptr;
        link->destroyed = true;
    }
    bool next(std::string_view& block) override
    {
        ++pulls;
        if (!q.empty()) {
            current = std::move(q.front());
            q.erase(q.begin());
            block = current;
            return true;
        }
        if (ended)
            return false;
        pause();
        block = {};
        return true;
    }
    void feed(std::string s)
    {
        q.push_back(std::move(s));
        resume();
    }
    void end()
    {
        ended = true;
        resume();
    }
    std::shared_ptr<queue_link> link;
    std::vector<std::string> q;
    std::string current;
    bool ended = false;
    int pulls = 0;
};

std::atomic<int> sources_destroyed{0};

// Feeds a queue_source: a block every 100 ms, n of them, then the end.
// Handlers hold the feeder by shared_ptr (no cycle: a handler dropped
// with the io_context frees it).
struct feeder : std::enable_shared_from_this<feeder> {
    feeder(net::io_context& ioc, std::shared_ptr<queue_link> l, int n) : timer(ioc), link(std::move(l)), left(n) {}
    void wait()
    {
        timer.expires_after(100ms);
        timer.async_wait([self = shared_from_this()](error_code ec) { self->tick(ec); });
    }
    void tick(error_code ec)
    {
        if (ec || !link->src) {
            if (link->destroyed)
                ++sources_destroyed;
            return;
        }
        if (left-- == 0)
            return link->src->end();
        link->src->feed("data: " + std::to_string(left) + "\n\n");
        wait();
    }
    net::steady_timer timer;
    std::shared_ptr<queue_link> link;
    int left;
};

// /pushed?N: N blocks, one every 100 ms from a timer, then the end.
void pushed_routes(server& s)
{
    hello(s);
    s.route("/pushed", [&s](const request& req, response& res) {
        int n = req.query().empty() ? 3 : std::stoi(std::string(req.query()));
        auto link = std::make_shared<queue_link>();
        res.header("Content-Type", "text/event-stream");
        res.stream(std::make_unique<queue_source>(link));
        std::make_shared<feeder>(s.context(), link, n)->wait();
    });
}

std::string body_of(std::uint16_t port, const std::string& target)
{
    client c(port);
    return c.get(target).body;
}

// Reads a streamed request body to its end, `pause` between reads, and
// answers "<bytes> <checksum>\n". Records the most bytes it saw waiting.
struct upload_stats {
    std::atomic<int> called{0};
    std::atomic<std::size_t> most_waiting{0};
    std::atomic<int> last_error{0};  // an async_error, or -1 for another error
};

struct upload_reader : std::enable_shared_from_this<upload_reader> {
    upload_reader(responder r, upload_stats& st, std::chrono::milliseconds pause)
        : r(std::move(r)), body(this->r.read_body()), timer(this->r.get_executor()), st(st), pause(pause)
    {
    }
    void read()
    {
        body.async_read_some(net::buffer(buf), [self = shared_from_this()](error_code ec, std::size_t k) {
            self->got(ec, k);
        });
    }
    void got(error_code ec, std::size_t k)
    {
        for (std::size_t i = 0; i < k; ++i)
            sum = sum * 31 + static_cast<unsigned char>(buf[i]);
        n += k;
        st.most_waiting = std::max(st.most_waiting.load(), body.available());
        if (ec == net::error::eof) {
            response res;
            res.body(std::to_string(n) + " " + std::to_string(sum) + "\n");
            r.send(std::move(res));
            return;
        }
        if (ec) {
            st.last_error = ec.category() == async_category() ? ec.value() : -1;
            return;
        }
        if (pause.count() == 0)
            return read();
        timer.expires_after(pause);
        timer.async_wait([self = shared_from_this()](error_code) { self->read(); });
    }
    responder r;
    body_reader body;
    net::steady_timer timer;
    upload_stats& st;
    std::chrono::milliseconds pause;
    char buf[16 * 1024];
    std::uint64_t n = 0, sum = 0;
};

// Polls (up to 1 s) until the loop thread made `done` true.
template <typename F>
void wait_until(F done)
{
    for (int i = 0; i < 200 && !done(); ++i)
        std::this_thread::sleep_for(5ms);
}

std::string pattern(std::size_t n)
{
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>(i % 251);
    return s;
}

std::string expected_sum(const std::string& body)
{
    std::uint64_t sum = 0;
    for (unsigned char ch : body)
        sum = sum * 31 + ch;
    return std::to_string(body.size()) + " " + std::to_string(sum) + "\n";
}

// /stream reads its body as it comes; /slow-stream reads 16 KiB per 10 ms;
// /limited takes 1000 bytes; /early answers 413 after its first block.
void upload_routes(server& s, upload_stats& st)
{
    hello(s);
    route_options o;
    o.stream_body = true;
    s.route("/stream", [&st](responder r) {
        ++st.called;
        std::make_shared<upload_reader>(std::move(r), st, 0ms)->read();
    }, o);
    s.route("/slow-stream", [&st](responder r) {
        ++st.called;
        std::make_shared<upload_reader>(std::move(r), st, 10ms)->read();
    }, o);
    s.route("/paced-stream", [&st](responder r) {
        ++st.called;
        std::make_shared<upload_reader>(std::move(r), st, 1ms)->read();
    }, o);
    route_options lim = o;
    lim.body_limit = 1000;
    s.route("/limited", [&st](responder r) {
        ++st.called;
        std::make_shared<upload_reader>(std::move(r), st, 0ms)->read();
    }, lim);
    s.route("/early", [&st](responder r) {
        ++st.called;
        auto b = std::make_shared<body_reader>(r.read_body());
        auto buf = std::make_shared<std::array<char, 4096>>();
        b->async_read_some(net::buffer(*buf), [&st, r = std::move(r), b, buf](error_code, std::size_t) mutable {
            response res;
            res.status(413);
            res.body_ref("too much for me\n");
            r.send(std::move(res));
            // What came before the answer may still be read; then the error.
            auto drain = std::make_shared<std::function<void(error_code, std::size_t)>>();
            *drain = [&st, b, buf, drain](error_code ec, std::size_t) {
                if (!ec)
                    return b->async_read_some(net::buffer(*buf), *drain);
                st.last_error = ec.category() == async_category() ? ec.value() : -1;
                *drain = nullptr;  // the cycle ends
            };
            b->async_read_some(net::buffer(*buf), *drain);
        });
    }, o);
    // A synchronous route: its body is spooled past body_memory_limit.
    s.route("/spooled", [](const request& req, response& res) { res.body(std::to_string(req.body().size())); });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(responder_suite)

BOOST_AUTO_TEST_CASE(a_timer_answered_request_delays_no_other_request)
{
    running_server s(running_server::quiet(), async_routes);
    auto t0 = clock_type::now();
    auto slow = std::async(std::launch::async, [&] { return body_of(s.port(), "/slow"); });
    std::this_thread::sleep_for(10ms);
    client fast(s.port());
    std::chrono::nanoseconds worst{0};
    for (int i = 0; i < 100; ++i) {
        auto a = clock_type::now();
        BOOST_TEST(fast.get("/").status == 200);
        worst = std::max<std::chrono::nanoseconds>(worst, clock_type::now() - a);
    }
    auto fast_done = clock_type::now();
    BOOST_TEST(slow.get() == "slow\n");
    auto slow_done = clock_type::now();
    BOOST_TEST(worst < 50ms);
    BOOST_TEST((fast_done < slow_done));
    BOOST_TEST((slow_done - t0 >= 200ms));
}

BOOST_AUTO_TEST_CASE(ten_slow_requests_overlap)
{
    running_server s(running_server::quiet(), async_routes);
    auto t0 = clock_type::now();
    std::vector<std::future<std::string>> all;
    for (int i = 0; i < 10; ++i)
        all.push_back(std::async(std::launch::async, [&] { return body_of(s.port(), "/slow"); }));
    for (auto& f : all)
        BOOST_TEST(f.get() == "slow\n");
    auto took = clock_type::now() - t0;
    BOOST_TEST((took >= 200ms && took < 400ms), "took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
}

BOOST_AUTO_TEST_CASE(a_coroutine_route_co_awaits_and_keep_alive_goes_on)
{
    running_server s(running_server::quiet(), async_routes);
    client c(s.port());
    c.send("POST /co/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    reply r = c.read();
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body == "co /co/x 5\n");
    BOOST_TEST(c.get("/").body == "Hello, World!");
    BOOST_TEST(c.get("/co").body == "co /co 0\n");
    BOOST_TEST(c.get("/co-throw").status == 500);
    BOOST_TEST(c.get("/").status == 200);
}

BOOST_AUTO_TEST_CASE(a_throw_before_the_head_is_a_500_a_drop_after_it_cuts_the_body)
{
    running_server s(running_server::quiet(), async_routes);
    client c(s.port());
    BOOST_TEST(c.get("/throw").status == 500);
    BOOST_TEST(c.get("/drop").status == 500);  // dropped responder
    BOOST_TEST(c.get("/").status == 200);
    client cut(s.port());
    cut.send("GET /cut HTTP/1.1\r\nHost: t\r\n\r\n");
    BOOST_CHECK_THROW(cut.read(), std::runtime_error);  // chunked body without its end
}

BOOST_AUTO_TEST_CASE(a_worker_thread_posts_the_answer)
{
    running_server s(running_server::quiet(), async_routes);
    client c(s.port());
    for (int i = 0; i < 5; ++i)
        BOOST_TEST(c.get("/thread").body == "computed 42\n");
}

BOOST_AUTO_TEST_CASE(a_client_that_leaves_cancels_its_handler)
{
    running_server s(running_server::quiet(), async_routes);
    int before = cancelled.load();
    {
        client c(s.port());
        c.send("GET /slow-10s HTTP/1.1\r\nHost: t\r\n\r\n");
        std::this_thread::sleep_for(50ms);
    }  // closed
    auto t0 = clock_type::now();
    while (cancelled.load() == before && clock_type::now() - t0 < 1s)
        std::this_thread::sleep_for(1ms);
    BOOST_TEST(cancelled.load() == before + 1);
    BOOST_TEST((clock_type::now() - t0 < 50ms));
    std::this_thread::sleep_for(20ms);
    BOOST_TEST(s.counters().connections_open == 0u);
}

BOOST_AUTO_TEST_CASE(pipelined_async_then_sync_answers_stay_in_order)
{
    running_server s(running_server::quiet(), async_routes);
    client c(s.port());
    c.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n"
           "GET /co HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    BOOST_TEST(c.read().body == "slow\n");
    BOOST_TEST(c.read().body == "Hello, World!");
    BOOST_TEST(c.read().body == "co /co 0\n");
    BOOST_TEST(c.read().body == "Hello, World!");
}

BOOST_AUTO_TEST_CASE(fifty_streams_get_their_events_on_time_and_others_stay_fast)
{
    running_server s(running_server::quiet(), async_routes);
    constexpr int clients = 50, events = 10;
    std::atomic<int> late{0}, complete{0};
    std::vector<std::thread> subs;
    for (int i = 0; i < clients; ++i) {
        subs.emplace_back([&] {
            client c(s.port());
            c.send("GET /events?" + std::to_string(events) + " HTTP/1.1\r\nHost: t\r\n\r\n");
            // Read the stream raw: each event's arrival time matters.
            auto start = clock_type::now();
            std::string got;
            int seen = 0;
            char buf[4096];
            while (seen < events) {
                ssize_t n = ::recv(c.fd(), buf, sizeof buf, 0);
                if (n <= 0)
                    return;
                got.append(buf, static_cast<std::size_t>(n));
                std::size_t count = 0;
                for (std::size_t p = 0; (p = got.find("data: ", p)) != std::string::npos; ++p)
                    ++count;
                for (; seen < static_cast<int>(count); ++seen) {
                    auto at = clock_type::now() - start;
                    auto due = std::chrono::milliseconds(100 * (seen + 1));
                    if (at < due - 40ms || at > due + 40ms)
                        ++late;
                }
            }
            ++complete;
        });
    }
    client fast(s.port());
    std::vector<double> ms;
    for (int i = 0; i < 200; ++i) {
        auto a = clock_type::now();
        BOOST_TEST(fast.get("/").status == 200);
        ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - a).count());
        std::this_thread::sleep_for(4ms);
    }
    for (auto& t : subs)
        t.join();
    std::sort(ms.begin(), ms.end());
    BOOST_TEST(complete.load() == clients);
    BOOST_TEST(late.load() == 0);
    BOOST_TEST(ms[ms.size() * 99 / 100] < 50.0);
}

BOOST_AUTO_TEST_CASE(a_client_that_never_reads_is_held_by_back_pressure_and_closed_by_the_io_timeout)
{
    config cfg = running_server::quiet();
    cfg.io_timeout = 500ms;
    running_server s(cfg, async_routes);
    client c(s.port());
    c.send("GET /flood HTTP/1.1\r\nHost: t\r\n\r\n");
    std::this_thread::sleep_for(300ms);
    // The producer is held: the server buffered at most a few blocks.
    auto bytes = s.counters().bytes_out;
    std::this_thread::sleep_for(100ms);
    BOOST_TEST(s.counters().bytes_out == bytes);
    auto t0 = clock_type::now();
    while (s.counters().connections_open != 0 && clock_type::now() - t0 < 3s)
        std::this_thread::sleep_for(10ms);
    BOOST_TEST(s.counters().connections_open == 0u);
    BOOST_TEST(s.counters().timeouts_io == 1u);
}

BOOST_AUTO_TEST_CASE(a_route_calls_another_route_of_the_same_server)
{
    std::uint16_t port = 0;
    running_server s(running_server::quiet(), [&](server& srv) {
        hello(srv);
        srv.route("/outer", [&port](request) -> net::awaitable<response> {
            auto ex = co_await net::this_coro::executor;
            net::ip::tcp::socket sock(ex);
            co_await sock.async_connect({net::ip::make_address("127.0.0.1"), port}, net::use_awaitable);
            std::string ask = "GET /inner HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
            co_await net::async_write(sock, net::buffer(ask), net::use_awaitable);
            std::string got;
            boost::system::error_code ec;
            char buf[4096];
            for (;;) {
                std::size_t n = co_await sock.async_read_some(net::buffer(buf),
                                                              net::redirect_error(net::use_awaitable, ec));
                if (ec)
                    break;
                got.append(buf, n);
            }
            response res;
            res.body("outer saw: " + got.substr(got.find("\r\n\r\n") + 4));
            co_return res;
        });
        srv.route("/inner", [](const request&, response& res) { res.body_ref("inner\n"); });
    });
    port = s.port();
    client c(s.port());
    BOOST_TEST(c.get("/outer").body == "outer saw: inner\n");
}

BOOST_AUTO_TEST_CASE(on_head_refuses_an_upload_without_reading_it)
{
    std::atomic<int> called{0};
    running_server s(running_server::quiet(), [&](server& srv) {
        route_options o;
        o.on_head = [](const request& req, response& res) {
            if (!req.header("authorization").empty())
                return false;
            res.status(401);
            res.header("WWW-Authenticate", "Basic realm=\"x\"");
            return true;
        };
        srv.route("/up", [&called](const request&, response& res) {
            ++called;
            res.body_ref("stored\n");
        }, o);
    });
    client c(s.port());
    c.send("PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: 20000000\r\nExpect: 100-continue\r\n\r\n");
    reply r = c.read();
    BOOST_TEST(r.status == 401);  // and no 100 Continue before it
    BOOST_TEST(r.headers["connection"] == "close");
    BOOST_TEST(c.closed_by_peer());
    BOOST_TEST(called.load() == 0);
    client ok(s.port());
    ok.send("PUT /up HTTP/1.1\r\nHost: t\r\nAuthorization: Basic eA==\r\nContent-Length: 3\r\n\r\nabc");
    BOOST_TEST(ok.read().body == "stored\n");
    BOOST_TEST(ok.get("/up", "Authorization: x\r\n").status == 200);
    BOOST_TEST(ok.get("/up").status == 401);  // no body: the connection stays
    BOOST_TEST(ok.get("/up", "Authorization: x\r\n").status == 200);
}

BOOST_AUTO_TEST_CASE(graceful_stop_delivers_the_pending_answers_that_come_in_time)
{
    auto srv = std::make_unique<running_server>(running_server::quiet(), async_routes);
    std::vector<std::unique_ptr<client>> cs;
    for (int i = 0; i < 3; ++i) {
        cs.push_back(std::make_unique<client>(srv->port()));
        cs.back()->send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    std::this_thread::sleep_for(50ms);
    std::thread stopper([&] { srv.reset(); });
    for (auto& c : cs) {
        reply r = c->read();
        BOOST_TEST(r.body == "slow\n");
        BOOST_TEST(r.headers["connection"] == "close");
    }
    stopper.join();
}

BOOST_AUTO_TEST_CASE(a_handler_that_misses_its_timeout_gives_504)
{
    std::vector<responder> kept;
    std::atomic<bool> late_checked{false};
    error_code late;
    running_server s(running_server::quiet(), [&](server& srv) {
        hello(srv);
        route_options o;
        o.timeout = 100ms;
        srv.route("/stuck", [&kept](responder r) { kept.push_back(std::move(r)); }, o);
        srv.route("/late", [&](const request&, response& res) {
            late = kept.front().send(response());
            late_checked = true;
            res.body_ref("checked\n");
        });
    });
    client c(s.port());
    auto t0 = clock_type::now();
    reply r = c.get("/stuck");
    auto took = clock_type::now() - t0;
    BOOST_TEST(r.status == 504);
    BOOST_TEST((took >= 100ms && took < 1s));
    BOOST_TEST(c.get("/").status == 200);  // keep-alive goes on
    BOOST_TEST(c.get("/late").body == "checked\n");
    BOOST_TEST(late == make_error_code(async_error::timed_out));
}

BOOST_AUTO_TEST_CASE(a_paused_source_sends_its_head_with_the_first_block_and_each_block_when_resumed)
{
    running_server s(running_server::quiet(), pushed_routes);
    client c(s.port());
    auto t0 = clock_type::now();
    c.send("GET /pushed?3 HTTP/1.1\r\nHost: t\r\n\r\n");
    std::string got = c.read_some();  // the head and the first event together
    auto first = clock_type::now() - t0;
    BOOST_TEST(got.find("HTTP/1.1 200") == 0u);
    BOOST_TEST(got.find("Transfer-Encoding: chunked") != std::string::npos);
    BOOST_TEST(got.find("data: 2") != std::string::npos);
    BOOST_TEST((first >= 90ms && first < 150ms), "first block after " << std::chrono::duration_cast<std::chrono::milliseconds>(first).count() << " ms");
    got = c.read_some();
    auto second = clock_type::now() - t0;
    BOOST_TEST(got.find("data: 1") != std::string::npos);
    BOOST_TEST((second >= 190ms && second < 250ms));
    std::string rest;
    while (rest.find("0\r\n\r\n") == std::string::npos)
        rest += c.read_some();
    BOOST_TEST(rest.find("data: 0") != std::string::npos);
    BOOST_TEST(c.get("/").status == 200);  // keep-alive goes on
}

BOOST_AUTO_TEST_CASE(a_source_that_ends_without_a_byte_is_an_empty_response)
{
    running_server s(running_server::quiet(), pushed_routes);
    client c(s.port());
    reply r = c.get("/pushed?0");
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.headers["content-length"] == "0");
    BOOST_TEST(r.body.empty());
    BOOST_TEST(c.get("/").status == 200);
}

BOOST_AUTO_TEST_CASE(a_client_that_leaves_destroys_its_paused_source)
{
    running_server s(running_server::quiet(), pushed_routes);
    int before = sources_destroyed.load();
    {
        client c(s.port());
        c.send("GET /pushed?100 HTTP/1.1\r\nHost: t\r\n\r\n");
        c.read_some();  // streaming: paused between events
    }
    auto t0 = clock_type::now();
    // The feeder notices at its next tick (<= 100 ms) that the source is gone.
    while (sources_destroyed.load() == before && clock_type::now() - t0 < 1s)
        std::this_thread::sleep_for(1ms);
    BOOST_TEST(sources_destroyed.load() == before + 1);
    BOOST_TEST((clock_type::now() - t0 < 150ms));
    BOOST_TEST(s.counters().connections_open == 0u);
}

BOOST_AUTO_TEST_CASE(a_paused_source_costs_no_cpu)
{
    std::atomic<bool> kept{false};  // written by the loop thread
    running_server s(running_server::quiet(), [&](server& srv) {
        srv.route("/never", [&](const request&, response& res) {
            auto src = std::make_unique<queue_source>(std::make_shared<queue_link>());
            kept = true;
            res.stream(std::move(src));
        });
    });
    client c(s.port());
    c.send("GET /never HTTP/1.1\r\nHost: t\r\n\r\n");
    std::this_thread::sleep_for(20ms);
    rusage a{}, b{};
    ::getrusage(RUSAGE_SELF, &a);
    std::this_thread::sleep_for(500ms);
    ::getrusage(RUSAGE_SELF, &b);
    auto us = [](const rusage& r) {
        return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000000L + r.ru_utime.tv_usec + r.ru_stime.tv_usec;
    };
    BOOST_TEST(us(b) - us(a) < 10000, "CPU while paused: " << us(b) - us(a) << " us");
    BOOST_TEST(kept.load());
}

BOOST_AUTO_TEST_CASE(graceful_stop_ends_paused_bodies_at_once)
{
    int before = sources_destroyed.load();
    auto srv = std::make_unique<running_server>(running_server::quiet(), pushed_routes);
    client c(srv->port());
    c.send("GET /pushed?100 HTTP/1.1\r\nHost: t\r\n\r\n");
    c.read_some();
    auto t0 = clock_type::now();
    srv.reset();  // a graceful stop: a subscriber between events does not hold it
    BOOST_TEST((clock_type::now() - t0 < 500ms));
    BOOST_TEST(sources_destroyed.load() >= before);
}

BOOST_AUTO_TEST_CASE(a_streamed_upload_creates_no_spool_file)
{
    upload_stats st;
    config cfg = running_server::quiet();
    cfg.spool_dir = "/nonexistent/fapws-spool";  // spooling fails here: a 500
    cfg.body_memory_limit = 64 * 1024;
    running_server s(cfg, [&st](server& srv) { upload_routes(srv, st); });
    const std::string big = pattern(10 * 1024 * 1024);
    client c(s.port());
    // The handler runs once the head is complete, before the body.
    c.send("PUT /stream HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(big.size()) + "\r\n\r\n" +
           big.substr(0, 1));
    wait_until([&] { return st.called.load() != 0; });
    BOOST_TEST(st.called.load() == 1);
    c.send(big.substr(1));
    reply r = c.read();
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body == expected_sum(big));
    // Chunked, 1 MiB chunks, then keep-alive goes on.
    std::string chunked = "POST /stream HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (std::size_t at = 0; at < big.size(); at += 1 << 20) {
        char line[32];
        std::snprintf(line, sizeof line, "%zx\r\n", std::min<std::size_t>(1 << 20, big.size() - at));
        chunked += line + big.substr(at, 1 << 20) + "\r\n";
    }
    c.send(chunked + "0\r\n\r\n");
    r = c.read();
    BOOST_TEST(r.body == expected_sum(big));
    BOOST_TEST(c.get("/").status == 200);
    // The control: a synchronous route spools, and fails in that directory.
    c.send("POST /spooled HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n" + big.substr(0, 1 << 20));
    BOOST_TEST(c.read().status == 500);
}

BOOST_AUTO_TEST_CASE(a_slow_reader_holds_its_client_back)
{
    upload_stats st;
    running_server s(running_server::quiet(), [&st](server& srv) { upload_routes(srv, st); });
    const std::string body = pattern(2 * 1024 * 1024);
    client c(s.port());
    c.send("PUT /slow-stream HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
    auto sent = std::async(std::launch::async, [&] { c.send(body); });
    sent.wait();  // 128 reads of 16 KiB, 10 ms apart: about 1.3 s
    reply r = c.read();
    BOOST_TEST(r.body == expected_sum(body));
    // At most a block (64 KiB) plus one read of the socket (a little over
    // 64 KiB) waits in the server, not the 4 MiB the client sends.
    BOOST_TEST(st.most_waiting.load() <= 160 * 1024, "waiting: " << st.most_waiting.load());
    BOOST_TEST(st.most_waiting.load() > 0);
}

BOOST_AUTO_TEST_CASE(a_reader_that_never_catches_up_holds_no_more_than_waits)
{
    // The client outpaces the reader for the whole upload, so what waits is
    // never fully read: the server must still drop what was read.
    upload_stats st;
    running_server s(running_server::quiet(), [&st](server& srv) { upload_routes(srv, st); });
    const std::string body = pattern(12 * 1024 * 1024);
    rusage before{}, after{};
    ::getrusage(RUSAGE_SELF, &before);
    client c(s.port());
    c.send("PUT /paced-stream HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
    auto sent = std::async(std::launch::async, [&] { c.send(body); });
    sent.wait();
    reply r = c.read();
    ::getrusage(RUSAGE_SELF, &after);
    BOOST_TEST(r.body == expected_sum(body));
    const long grew_kib = after.ru_maxrss - before.ru_maxrss;
    BOOST_TEST(grew_kib < 6 * 1024, "peak RSS grew " << grew_kib << " KiB for a 12 MiB upload");
}

BOOST_AUTO_TEST_CASE(an_answer_before_the_body_end_closes_after_it)
{
    upload_stats st;
    running_server s(running_server::quiet(), [&st](server& srv) { upload_routes(srv, st); });
    client c(s.port());
    c.send("PUT /early HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n" + pattern(8192));
    reply r = c.read();
    BOOST_TEST(r.status == 413);
    BOOST_TEST(r.headers["connection"] == "close");
    BOOST_TEST(c.closed_by_peer());
    wait_until([&] { return st.last_error.load() != 0; });
    BOOST_TEST(st.last_error.load() == int(async_error::already_completed));
}

BOOST_AUTO_TEST_CASE(a_body_past_the_route_limit_is_refused)
{
    upload_stats st;
    running_server s(running_server::quiet(), [&st](server& srv) { upload_routes(srv, st); });
    {
        // Declared too long: 413 before the handler, and no 100 Continue.
        client c(s.port());
        c.send("PUT /limited HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n");
        reply r = c.read();
        BOOST_TEST(r.status == 413);
        BOOST_TEST(st.called.load() == 0);
    }
    {
        client c(s.port());
        c.send("PUT /limited HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + pattern(1000));
        BOOST_TEST(c.read().body == expected_sum(pattern(1000)));
    }
    {
        // Chunked past the limit: the client gets 413, the reader body_refused.
        client c(s.port());
        c.send("PUT /limited HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n" + pattern(512) + "\r\n");
        wait_until([&] { return st.called.load() >= 2; });
        c.send("200\r\n" + pattern(512) + "\r\n0\r\n\r\n");
        reply r = c.read();
        BOOST_TEST(r.status == 413);
        wait_until([&] { return st.last_error.load() != 0; });
        BOOST_TEST(st.last_error.load() == int(async_error::body_refused));
    }
}

BOOST_AUTO_TEST_CASE(a_client_that_leaves_mid_body_ends_the_read)
{
    upload_stats st;
    running_server s(running_server::quiet(), [&st](server& srv) { upload_routes(srv, st); });
    {
        client c(s.port());
        c.send("PUT /stream HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + pattern(5000));
        wait_until([&] { return st.called.load() != 0; });
    }
    wait_until([&] { return st.last_error.load() != 0; });
    BOOST_TEST(st.last_error.load() == int(async_error::client_gone));
    // Pipelined: a streamed body, then a plain request, in order.
    client c(s.port());
    c.send("POST /stream HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    BOOST_TEST(c.read().body == expected_sum("hello"));
    BOOST_TEST(c.read().body == "Hello, World!");
}

BOOST_AUTO_TEST_SUITE_END()
