// Replays the request corpus (test/requests/{valid,invalid}/*.http) against
// the real server over loopback, each case fed three ways: in one write, split
// at every byte boundary (cases up to 512 bytes), and in random pieces. Each
// must get the status its file names, in every mode; an invalid request is
// the last one answered on its connection, and no smuggled request ever runs.
#include <fapws/server.hpp>

#include "corpus.hpp"
#include "support.hpp"

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

using namespace fapws;
using namespace fapws::test;

namespace {

std::atomic<int> smuggled{0};

void corpus_routes(server& s)
{
    s.route("/", [](const request& req, response& res) {
        if (req.path().find("smuggled") != std::string_view::npos || req.path() == "/G")
            ++smuggled;
        std::string seen(req.method());
        seen += ' ';
        seen += req.path();
        seen += " host=";
        seen += req.header("host");
        seen += " body=" + std::to_string(req.body().size());
        res.body(std::move(seen));
    });
}

// Sends without failing: the server may close while a refused request is
// still being sent.
void send_quietly(int fd, std::string_view s)
{
    while (!s.empty()) {
        ssize_t w = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
        if (w <= 0)
            return;
        s.remove_prefix(static_cast<std::size_t>(w));
    }
}

// Feeds `pieces` with a pause between them, so the server reads them apart,
// then checks the answers against the case.
void replay(std::uint16_t port, const corpus_case& c, const std::vector<std::string_view>& pieces,
            const std::string& mode)
{
    client cl(port);
    int one = 1;
    ::setsockopt(cl.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        if (i)
            std::this_thread::sleep_for(std::chrono::microseconds(300));
        send_quietly(cl.fd(), pieces[i]);
    }
    ::shutdown(cl.fd(), SHUT_WR);
    std::string where = c.name + " (" + mode + ")";
    reply r;
    try {
        r = cl.read();
    } catch (const std::exception& e) {
        BOOST_ERROR(where + ": no answer: " + e.what());
        return;
    }
    BOOST_TEST(r.status == c.expect, where + ": status " + std::to_string(r.status));
    if (c.expect >= 400) {
        BOOST_TEST(r.headers["connection"] == "close", where + ": refused but kept open");
        BOOST_TEST(cl.closed_by_peer(), where + ": more after a refused request");
        return;
    }
    for (int i = 1; i < c.responses; ++i) {
        try {
            reply more = cl.read();
            BOOST_TEST(more.status == 200, where + ": response " + std::to_string(i + 1));
        } catch (const std::exception& e) {
            BOOST_ERROR(where + ": response " + std::to_string(i + 1) + " missing: " + e.what());
        }
    }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(requests)

BOOST_AUTO_TEST_CASE(every_corpus_request_gets_its_status_however_it_is_split)
{
    auto cases = load_corpus();
    BOOST_REQUIRE(cases.size() >= 60);
    running_server s(running_server::quiet(), corpus_routes);
    std::mt19937 rng(9);
    for (const auto& c : cases) {
        std::string_view all = c.bytes;
        replay(s.port(), c, {all}, "one write");
        if (all.size() <= 512) {
            for (std::size_t k = 1; k < all.size(); ++k)
                replay(s.port(), c, {all.substr(0, k), all.substr(k)}, "split at " + std::to_string(k));
        }
        for (int round = 0; round < 3; ++round) {
            std::vector<std::string_view> pieces;
            std::size_t max_piece = all.size() > 4096 ? 4096 : 16;
            for (std::size_t at = 0; at < all.size();) {
                std::size_t n = std::uniform_int_distribution<std::size_t>(1, max_piece)(rng);
                pieces.push_back(all.substr(at, n));
                at += std::min(n, all.size() - at);
            }
            replay(s.port(), c, pieces, "random pieces " + std::to_string(round));
        }
    }
    BOOST_TEST(smuggled.load() == 0);
    BOOST_TEST(s.counters().connections_open <= 1u);
}

BOOST_AUTO_TEST_SUITE_END()
