#include <fapws/server.hpp>

#include "support.hpp"

#include <boost/test/unit_test.hpp>

#include <boost/asio/post.hpp>

#include <atomic>
#include <chrono>
#include <thread>

using namespace fapws;
using namespace fapws::test;

namespace {

// A source that produces `blocks` blocks of `size` bytes of `fill`.
class counting_source final : public body_source {
public:
    counting_source(int blocks, std::size_t size, char fill, bool gather = false)
        : left_(blocks), block_(size, fill), gather_(gather)
    {
    }
    bool gathers() const override { return gather_; }
    bool next(std::string_view& b) override
    {
        if (left_-- <= 0)
            return false;
        b = block_;
        return true;
    }

private:
    int left_;
    std::string block_;
    bool gather_;
};

void echo_routes(server& s)
{
    hello(s);
    s.route("/echo", [](const request& req, response& res) {
        std::string body(req.body().size(), '\0');
        req.body().read_at(0, body.data(), body.size());
        res.header("X-Spooled", req.body().in_memory() ? "no" : "yes");
        res.body(std::move(body));
    });
    s.route("/stream", [](const request& req, response& res) {
        int n = req.query().empty() ? 3 : std::stoi(std::string(req.query()));
        res.stream(std::make_unique<counting_source>(n, 64 * 1024, 'x'));
    });
    s.route("/small-stream", [](const request&, response& res) {
        res.stream(std::make_unique<counting_source>(2, 5, 'y', true));  // gathers: in hand
    });
    s.route("/blocks", [](const request&, response& res) {
        res.stream(std::make_unique<counting_source>(3, 5, 'z'));
    });
    s.route("/boom", [](const request&, response&) -> void { throw std::runtime_error("boom"); });
    s.route("/split", [](const request&, response& res) {
        res.header("X-Bad", "a\r\nSet-Cookie: evil=1");
    });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(session)

BOOST_AUTO_TEST_CASE(keep_alive_serves_many_requests_on_one_connection)
{
    running_server s(running_server::quiet(), echo_routes);
    client c(s.port());
    for (int i = 0; i < 100; ++i) {
        reply r = c.get("/x" + std::to_string(i));
        BOOST_TEST(r.status == 200);
        BOOST_TEST(r.body == "Hello, World!");
        BOOST_TEST(r.headers["x-path"] == "/x" + std::to_string(i));
        BOOST_TEST(r.headers.count("date") == 1u);
        BOOST_TEST(r.headers["server"] == "fapws");
    }
}

BOOST_AUTO_TEST_CASE(pipelined_responses_come_in_request_order)
{
    running_server s(running_server::quiet(), echo_routes);
    client c(s.port());
    std::string batch;
    for (int i = 0; i < 50; ++i)
        batch += "GET /p" + std::to_string(i) + " HTTP/1.1\r\nHost: t\r\n\r\n";
    c.send(batch);
    for (int i = 0; i < 50; ++i)
        BOOST_TEST(c.read().headers["x-path"] == "/p" + std::to_string(i));
}

// More pipelined input than the loop's 64 KiB read buffer holds, in one go:
// the server must go back for the rest without a new readiness edge.
BOOST_AUTO_TEST_CASE(pipelined_burst_larger_than_the_read_buffer_is_all_answered)
{
    running_server s(running_server::quiet(), echo_routes);
    client c(s.port());
    std::string batch;
    constexpr int n = 3000;
    for (int i = 0; i < n; ++i)
        batch += "GET /burst/" + std::to_string(i) + " HTTP/1.1\r\nHost: t\r\n\r\n";
    BOOST_REQUIRE(batch.size() > 100 * 1024);
    c.send(batch);
    for (int i = 0; i < n; ++i) {
        reply r = c.read();
        BOOST_REQUIRE(r.headers["x-path"] == "/burst/" + std::to_string(i));
    }
}

// A client that sends its request and half-closes at once, then reads until
// EOF. The FIN reaches the server before it reads (its loop is held by a slow
// handler), so one readiness edge covers data and EOF: the server must still
// see the EOF and close, not wait for the 75 s keep-alive timeout.
BOOST_AUTO_TEST_CASE(request_then_half_close_is_answered_and_closed_at_once)
{
    running_server s(running_server::quiet(), [](server& srv) {
        echo_routes(srv);
        srv.route("/block", [](const request&, response& res) {
            std::this_thread::sleep_for(std::chrono::milliseconds(200));  // holds the loop
            res.body_ref("blocked");
        });
    });
    for (int i = 0; i < 3; ++i) {
        client c(s.port());  // accepted while the loop is free
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        client blocker(s.port());
        blocker.send("GET /block HTTP/1.1\r\nHost: t\r\n\r\n");
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        c.send("GET /half-close HTTP/1.1\r\nHost: t\r\n\r\n");
        ::shutdown(c.fd(), SHUT_WR);
        BOOST_TEST(blocker.read().body == "blocked");
        auto t0 = std::chrono::steady_clock::now();
        reply r = c.read();
        BOOST_TEST(r.status == 200);
        BOOST_TEST(c.closed_by_peer());  // within the client's 5 s read timeout
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
        BOOST_TEST(ms.count() < 2000);
    }
}

// A head split after its request line, while another connection's read
// reuses the loop's buffer in between: the first request keeps its own path.
BOOST_AUTO_TEST_CASE(head_split_across_reads_keeps_its_request_line)
{
    running_server s(running_server::quiet(), echo_routes);
    client a(s.port());
    a.send("GET /first-request-path HTTP/1.1\r\nHo");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    client b(s.port());
    BOOST_TEST(b.get("/second-request-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx").status == 200);
    a.send("st: t\r\nX-Late: 1\r\n\r\n");
    reply r = a.read();
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.headers["x-path"] == "/first-request-path");
}

BOOST_AUTO_TEST_CASE(pipelined_streams_and_small_responses_stay_in_order)
{
    running_server s(running_server::quiet(), echo_routes);
    client c(s.port());
    c.send("GET /stream?5 HTTP/1.1\r\nHost: t\r\n\r\nGET /a HTTP/1.1\r\nHost: t\r\n\r\n"
           "GET /stream?2 HTTP/1.1\r\nHost: t\r\n\r\n");
    reply a = c.read();
    BOOST_TEST(a.headers["transfer-encoding"] == "chunked");
    BOOST_TEST(a.body.size() == 5u * 64 * 1024);
    BOOST_TEST(c.read().headers["x-path"] == "/a");
    BOOST_TEST(c.read().body.size() == 2u * 64 * 1024);
}

BOOST_AUTO_TEST_CASE(head_has_get_length_and_no_body)
{
    running_server s(running_server::quiet(), echo_routes);
    client c(s.port());
    c.send("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    reply r = c.read(true);
    BOOST_TEST(r.headers["content-length"] == "13");
    BOOST_TEST(c.get("/after").body == "Hello, World!");  // no stray body bytes
}

BOOST_AUTO_TEST_CASE(http10_closes_unless_keep_alive_asked)
{
    running_server s(running_server::quiet(), echo_routes);
    {
        client c(s.port());
        c.send("GET / HTTP/1.0\r\n\r\n");
        reply r = c.read();
        BOOST_TEST(r.headers["connection"] == "close");
        BOOST_TEST(c.closed_by_peer());
    }
    {
        client c(s.port());
        c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        BOOST_TEST(c.read().headers["connection"] == "keep-alive");
        c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        BOOST_TEST(c.read().status == 200);
    }
}

BOOST_AUTO_TEST_CASE(requests_pipelined_after_connection_close_are_not_answered)
{
    running_server s(running_server::quiet(), echo_routes);
    client c(s.port());
    c.send("GET /first HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
           "GET /second HTTP/1.1\r\nHost: t\r\n\r\n");
    reply r = c.read();
    BOOST_TEST(r.headers["x-path"] == "/first");
    BOOST_TEST(r.headers["connection"] == "close");
    BOOST_TEST(c.closed_by_peer());  // the whole first response, then a clean end
}

BOOST_AUTO_TEST_CASE(http10_unknown_length_is_close_delimited)
{
    running_server s(running_server::quiet(), echo_routes);
    client c(s.port());
    c.send("GET /stream?3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    reply r = c.read();
    BOOST_TEST(r.closed);
    BOOST_TEST(r.body.size() == 3u * 64 * 1024);
}

BOOST_AUTO_TEST_CASE(small_stream_gets_content_length)
{
    running_server s(running_server::quiet(), echo_routes);
    client c(s.port());
    reply r = c.get("/small-stream");
    BOOST_TEST(r.headers["content-length"] == "10");
    BOOST_TEST(r.body == "yyyyyyyyyy");
}

BOOST_AUTO_TEST_CASE(issue_11_a_stream_is_not_gathered_unless_its_source_asks)
{
    // PEP 3333: no block is held back while the next is produced. Each
    // block goes to the socket alone, so each is a chunk of its own.
    running_server s(running_server::quiet(), echo_routes);
    client c(s.port());
    c.send("GET /blocks HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    std::string all;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(c.fd(), buf, sizeof buf, 0)) > 0)
        all.append(buf, static_cast<std::size_t>(n));
    BOOST_TEST(all.find("Transfer-Encoding: chunked") != std::string::npos);
    BOOST_TEST(all.substr(all.find("\r\n\r\n") + 4) == "5\r\nzzzzz\r\n5\r\nzzzzz\r\n5\r\nzzzzz\r\n0\r\n\r\n");
}

BOOST_AUTO_TEST_CASE(expect_continue_answered_before_body)
{
    running_server s(running_server::quiet(), echo_routes);
    client c(s.port());
    c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    reply interim = c.read();
    BOOST_TEST(interim.status == 100);
    c.send("hello");
    reply r = c.read();
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body == "hello");
}

BOOST_AUTO_TEST_CASE(expect_continue_refused_body_gets_413_without_100)
{
    config cfg = running_server::quiet();
    cfg.body_limit = 10;
    running_server s(cfg, echo_routes);
    client c(s.port());
    c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
    BOOST_TEST(c.read().status == 413);
}

BOOST_AUTO_TEST_CASE(chunked_request_body_is_dechunked)
{
    running_server s(running_server::quiet(), echo_routes);
    client c(s.port());
    c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n");
    reply r = c.read();
    BOOST_TEST(r.body == "hello world");
}

BOOST_AUTO_TEST_CASE(body_sent_byte_by_byte_arrives_whole)
{
    running_server s(running_server::quiet(), echo_routes);
    client c(s.port());
    std::string req = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world";
    for (char ch : req) {
        c.send(std::string(1, ch));
        std::this_thread::yield();
    }
    BOOST_TEST(c.read().body == "hello world");
}

BOOST_AUTO_TEST_CASE(large_body_is_spooled_to_a_file)
{
    config cfg = running_server::quiet();
    cfg.body_memory_limit = 1000;
    running_server s(cfg, echo_routes);
    client c(s.port());
    std::string body(100'000, 'z');
    body[500] = 'a';
    c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + body);
    reply r = c.read();
    BOOST_TEST(r.headers["x-spooled"] == "yes");
    BOOST_TEST((r.body == body));
}

BOOST_AUTO_TEST_CASE(handler_exception_is_500_and_server_goes_on)
{
    running_server s(running_server::quiet(), echo_routes);
    client c(s.port());
    BOOST_TEST(c.get("/boom").status == 500);
    BOOST_TEST(c.get("/").status == 200);
}

BOOST_AUTO_TEST_CASE(header_injection_by_handler_is_refused)
{
    running_server s(running_server::quiet(), echo_routes);
    client c(s.port());
    reply r = c.get("/split");
    BOOST_TEST(r.status == 500);
    BOOST_TEST(r.head.find("evil") == std::string::npos);
}

struct bad_case {
    const char* name;
    std::string request;
    int status;
};

BOOST_AUTO_TEST_CASE(malformed_and_hostile_requests_get_their_4xx_and_close)
{
    config cfg = running_server::quiet();
    cfg.body_limit = 1000;
    cfg.header_limit = 4096;
    cfg.header_line_limit = 1024;
    running_server s(cfg, echo_routes);
    const bad_case cases[] = {
        {"garbage", "\x01\x02garbage\r\n\r\n", 400},
        {"bad method token", "GE(T / HTTP/1.1\r\nHost: t\r\n\r\n", 400},
        {"no host in 1.1", "GET / HTTP/1.1\r\n\r\n", 400},
        {"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
        {"http/1.2", "GET / HTTP/1.2\r\nHost: t\r\n\r\n", 505},
        {"cl and te", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        {"te and cl", "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400},
        {"two different cl", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
        {"te not chunked", "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
        {"te in 1.0", "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        {"bad cl", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400},
        {"body over limit", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n", 413},
        {"long header line", "GET / HTTP/1.1\r\nHost: t\r\nX: " + std::string(2000, 'a') + "\r\n\r\n", 431},
        {"long target", "GET /" + std::string(2000, 'a') + " HTTP/1.1\r\nHost: t\r\n\r\n", 414},
        {"headers over total", "GET / HTTP/1.1\r\nHost: t\r\n" + [] {
             std::string h;
             for (int i = 0; i < 100; ++i)
                 h += "X-" + std::to_string(i) + ": " + std::string(60, 'b') + "\r\n";
             return h;
         }() + "\r\n", 431},
        {"space before colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400},
        {"bare lf", "GET / HTTP/1.1\nHost: t\n\n", 400},
    };
    for (const auto& bc : cases) {
        BOOST_TEST_CONTEXT(bc.name)
        {
            client c(s.port());
            c.send(bc.request);
            reply r = c.read();
            BOOST_TEST(r.status == bc.status);
            BOOST_TEST(r.headers["connection"] == "close");
            BOOST_TEST(c.closed_by_peer());
        }
    }
    const stats st = s.counters();
    BOOST_TEST(st.bad_requests >= 10u);
    client ok(s.port());
    BOOST_TEST(ok.get("/").status == 200);
}

BOOST_AUTO_TEST_CASE(chunked_chunk_over_body_limit_is_413)
{
    config cfg = running_server::quiet();
    cfg.body_limit = 10;
    running_server s(cfg, echo_routes);
    client c(s.port());
    c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n");
    BOOST_TEST(c.read().status == 413);
}

BOOST_AUTO_TEST_CASE(slowloris_head_times_out)
{
    config cfg = running_server::quiet();
    cfg.header_timeout = std::chrono::milliseconds(300);
    running_server s(cfg, echo_routes);
    client c(s.port());
    c.send("GET / HTTP/1.1\r\nHost: t\r\n");
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 5; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        try {
            c.send("X-A: b\r\n");  // trickling does not extend the deadline
        } catch (...) {
        }
    }
    reply r = c.read();
    BOOST_TEST(r.status == 408);
    BOOST_TEST(c.closed_by_peer());
    BOOST_TEST((std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3)));
}

BOOST_AUTO_TEST_CASE(idle_keep_alive_connection_is_closed_after_timeout)
{
    config cfg = running_server::quiet();
    cfg.keepalive_timeout = std::chrono::milliseconds(200);
    running_server s(cfg, echo_routes);
    client c(s.port());
    BOOST_TEST(c.get("/").status == 200);
    BOOST_TEST(c.closed_by_peer());
}

BOOST_AUTO_TEST_CASE(slow_reader_does_not_stall_others)
{
    running_server s(running_server::quiet(), echo_routes);
    client slow(s.port());
    // 64 MiB streamed to a client that reads nothing for now: far more than
    // the socket buffers hold, so the server must wait for writability.
    slow.send("GET /stream?1024 HTTP/1.1\r\nHost: t\r\n\r\n");
    client fast(s.port());
    for (int i = 0; i < 20; ++i)
        BOOST_TEST(fast.get("/").status == 200);
    // Then the slow one still gets all of it.
    reply r = slow.read();
    BOOST_TEST(r.body.size() == 1024u * 64 * 1024);
}

BOOST_AUTO_TEST_CASE(graceful_stop_finishes_in_flight_response)
{
    auto srv = std::make_unique<running_server>(running_server::quiet(), echo_routes);
    client c(srv->port());
    c.send("GET /stream?256 HTTP/1.1\r\nHost: t\r\n\r\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::thread stopper([&] { srv.reset(); });
    reply r = c.read();
    BOOST_TEST(r.body.size() == 256u * 64 * 1024);
    stopper.join();
}

BOOST_AUTO_TEST_CASE(counters_count)
{
    running_server s(running_server::quiet(), echo_routes);
    {
        client c(s.port());
        c.get("/");
        c.get("/");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const stats st = s.counters();
    BOOST_TEST(st.requests == 2u);
    BOOST_TEST(st.connections_accepted == 1u);
    BOOST_TEST(st.bytes_out > 100u);
}

BOOST_AUTO_TEST_CASE(issue_9_upload_arriving_at_graceful_stop_is_answered)
{
    auto srv = std::make_unique<running_server>(running_server::quiet(), echo_routes);
    client c(srv->port());
    c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::thread stopper([&] { srv.reset(); });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    c.send("world");
    reply r = c.read();
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body == "helloworld");
    BOOST_TEST(r.headers["connection"] == "close");
    stopper.join();
}

BOOST_AUTO_TEST_CASE(issue_9_body_trickled_below_the_minimum_rate_gets_408)
{
    config cfg = running_server::quiet();
    cfg.io_timeout = std::chrono::milliseconds(300);
    cfg.body_min_rate = 1000;
    running_server s(cfg, echo_routes);
    client c(s.port());
    c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n");
    // A byte every 50 ms: never idle for io_timeout, but far below 1000 B/s.
    for (int i = 0; i < 40; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        try {
            c.send("x");
        } catch (...) {
            break;
        }
    }
    reply r = c.read();
    BOOST_TEST(r.status == 408);
    BOOST_TEST(c.closed_by_peer());
}

BOOST_AUTO_TEST_CASE(issue_9_informational_status_from_a_handler_becomes_500)
{
    running_server s(running_server::quiet(), [](server& srv) {
        hello(srv);
        srv.route("/early", [](const request&, response& res) { res.status(101); });
    });
    client c(s.port());
    c.send("GET /early HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    BOOST_TEST(c.read().status == 500);
    reply next = c.read();
    BOOST_TEST(next.status == 200);
    BOOST_TEST(next.body == "Hello, World!");
}

BOOST_AUTO_TEST_CASE(issue_9_trailers_never_reach_the_handler)
{
    running_server s(running_server::quiet(), [](server& srv) {
        srv.route("/", [](const request& req, response& res) {
            std::string out;
            for (const auto& f : req.fields())
                out += std::string(f.name) + "=" + std::string(f.value) + ";";
            res.body(std::move(out));
        });
    });
    client c(s.port());
    c.send("POST / HTTP/1.1\r\nHost: good\r\nTransfer-Encoding: chunked\r\n\r\n"
           "3\r\nabc\r\n0\r\nHost: evil\r\nCookie: a=b\r\n\r\n");
    reply r = c.read();
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body == "Host=good;Transfer-Encoding=chunked;");
}

BOOST_AUTO_TEST_CASE(issue_9_obs_fold_with_a_later_body_is_refused_not_a_crash)
{
    running_server s(running_server::quiet(), echo_routes);
    for (int i = 0; i < 3; ++i) {
        client c(s.port());
        c.send("GET /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nRange: " + std::string(1500, 'a') +
               "\r\n " + std::string(1500, 'b') + "\r\n\r\n");
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        try {
            c.send("hello");
        } catch (...) {
        }
        BOOST_TEST(c.read().status == 400);
    }
    client after(s.port());
    BOOST_TEST(after.get("/").status == 200);
}

BOOST_AUTO_TEST_CASE(issue_9_route_mounted_while_a_body_arrives_keeps_its_handler)
{
    // The router handed out pointers into a vector that push_back moved: a
    // use-after-free under ASan once a route was mounted mid-request.
    std::atomic<bool> mounted{false};
    server* srvp = nullptr;
    running_server s(running_server::quiet(), [&](server& srv) {
        srvp = &srv;
        echo_routes(srv);
    });
    client c(s.port());
    c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    boost::asio::post(srvp->context(), [&] {
        for (int i = 0; i < 64; ++i)
            srvp->route("/r" + std::to_string(i), [](const request&, response&) {});
        mounted = true;
    });
    while (!mounted)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    c.send("world");
    reply r = c.read();
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body == "helloworld");
}

BOOST_AUTO_TEST_CASE(issue_9_a_crlf_after_a_request_leaves_no_parser_behind)
{
    // Found by the fuzzer: the scratch parser made for the CRLF after a
    // request kept a body sink pointing at that connection; the next
    // connection's body was appended through it after the first was freed.
    running_server s(running_server::quiet(), echo_routes);
    for (int i = 0; i < 20; ++i) {
        {
            client a(s.port());
            a.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n\r\n");
            BOOST_TEST(a.read().status == 200);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        client b(s.port());
        b.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        reply r = b.read();
        BOOST_TEST(r.status == 200);
        BOOST_TEST(r.body == "hello");
    }
}

BOOST_AUTO_TEST_CASE(issue_12_a_proxy_header_sent_a_byte_at_a_time_gives_the_client_address)
{
    std::uint16_t port = 0;
    running_server s(running_server::quiet(), [&](server& srv) {
        srv.route("/", [](const request& req, response& res) {
            res.body(req.remote_addr() + " " + std::to_string(req.remote_port()));
        });
        listen_options o;
        o.proxy_protocol = true;
        port = srv.listen("127.0.0.1:0", o).port;
    });
    client c(port);
    const std::string header = "PROXY TCP4 192.0.2.33 127.0.0.1 40123 80\r\n";
    for (char ch : header) {
        c.send(std::string(1, ch));
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    BOOST_TEST(c.get("/").body == "192.0.2.33 40123");
    BOOST_TEST(c.get("/").body == "192.0.2.33 40123");  // for the connection's life
    client bad(port);
    bad.send(std::string(120, 'P'));
    BOOST_TEST(bad.read().status == 400);
    client garbage(port);
    garbage.send("PROXY TCP4 192.0.2.33 127.0.0.1 40123\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    BOOST_TEST(garbage.read().status == 400);  // a port missing
}

BOOST_AUTO_TEST_SUITE_END()
