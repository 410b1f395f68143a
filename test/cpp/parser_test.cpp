// The request parser without sockets (Beast's own parser tests are the
// model): every request of the corpus, split at every byte boundary, parses
// to the same request or to the same refusal as in one piece. The parser is
// fed as the connection feeds it: leading empty lines skipped, the head
// handed over whole (the connection's scan_head guarantees it), the body in
// whatever pieces arrive. The loopback replay (requests_test) covers the
// connection around it.
#include "../../lib/src/detail/framing.hpp"
#include "../../lib/src/detail/parser.hpp"

#include "corpus.hpp"

#include <boost/test/unit_test.hpp>

#include <optional>
#include <string>
#include <vector>

using namespace fapws;
using namespace fapws::detail;
using namespace fapws::test;

namespace {

struct outcome {
    bool done = false;
    std::string error;  // empty when none
    int verdict = 0;
    std::string method, target;
    std::vector<std::pair<std::string, std::string>> fields;
    std::string body;

    bool operator==(const outcome&) const = default;
};

void append_body(void* ctx, std::string_view bytes, beast_error& ec)
{
    static_cast<std::string*>(ctx)->append(bytes);
    ec = {};
}

// Parses the first request of `all` fed in pieces split at `at` (0: whole).
// Like the connection, unconsumed bytes are handed again with the next ones,
// and the buffer never moves (the views point into it).
outcome parse(const std::string& all, std::size_t at)
{
    outcome o;
    request req;
    std::string buf;
    buf.reserve(all.size());
    request_parser p(req, body_sink{&append_body, &o.body}, 8192);
    p.eager(true);
    p.header_limit(8192);
    p.body_limit(1 << 20);
    p.trailer_budget(8192);
    std::vector<std::string_view> pieces;
    if (at == 0 || at >= all.size())
        pieces = {all};
    else
        pieces = {std::string_view(all).substr(0, at), std::string_view(all).substr(at)};
    std::size_t used = 0;
    for (std::string_view piece : pieces) {
        buf.append(piece);
        if (!p.got_some()) {
            // The connection's contract (start_head): empty lines before a
            // request are skipped, and the head reaches the parser whole.
            while (buf.size() - used >= 2 && buf.compare(used, 2, "\r\n") == 0)
                used += 2;
            if (buf.find("\r\n\r\n", used) == std::string::npos)
                continue;
        }
        while (used < buf.size() && !p.is_done()) {
            beast_error ec;
            p.input(buf.data() + used, buf.data() + buf.size());
            std::size_t n = p.put(boost::asio::const_buffer(buf.data() + used, buf.size() - used), ec);
            used += n;
            if (ec == http::error::need_more)
                break;
            if (ec) {
                o.error = ec.message();
                o.verdict = static_cast<int>(p.why());
                return o;
            }
            if (n == 0)
                break;
        }
        if (p.is_done())
            break;
    }
    o.done = p.is_done();
    if (p.is_header_done()) {
        o.method = std::string(req.method());
        o.target = std::string(req.target());
        for (const auto& f : req.fields())
            o.fields.emplace_back(std::string(f.name), std::string(f.value));
    }
    return o;
}

std::string describe(const outcome& o)
{
    return (o.done ? "done " : "not done ") + o.method + " " + o.target + " fields=" + std::to_string(o.fields.size()) +
           " body=" + std::to_string(o.body.size()) + (o.error.empty() ? "" : " error=" + o.error);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(parser)

BOOST_AUTO_TEST_CASE(every_corpus_request_parses_the_same_split_at_every_byte)
{
    auto cases = load_corpus();
    BOOST_REQUIRE(cases.size() >= 60);
    std::size_t checked = 0;
    for (const auto& c : cases) {
        const outcome whole = parse(c.bytes, 0);
        if (c.expect == 200 && c.responses == 1) {
            BOOST_TEST(whole.done, c.name + ": " + describe(whole));
            BOOST_TEST(whole.error.empty(), c.name + ": " + describe(whole));
        }
        for (std::size_t k = 1; k < c.bytes.size() && k <= 2048; ++k) {
            const outcome split = parse(c.bytes, k);
            if (!(split == whole)) {
                BOOST_ERROR(c.name + " split at " + std::to_string(k) + ": " + describe(split) + " vs whole: " +
                            describe(whole));
                break;
            }
            ++checked;
        }
    }
    BOOST_TEST(checked > 5000u);
}

BOOST_AUTO_TEST_CASE(a_chunked_body_parsed_a_byte_at_a_time_keeps_its_bytes_and_no_trailer_in_the_head)
{
    const std::string req =
        "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    outcome whole = parse(req, 0);
    BOOST_TEST(whole.done);
    BOOST_TEST(whole.body == "hello world");
    BOOST_TEST(whole.fields.size() == 2u);  // Host and Transfer-Encoding: the trailer stays out
    for (std::size_t k = 1; k < req.size(); ++k)
        BOOST_TEST((parse(req, k) == whole), "split at " << k);
}



// The response framing decision (detail/framing.hpp), case by case.
BOOST_AUTO_TEST_CASE(response_framing_table)
{
    struct row {
        int status, version;
        bool keep_asked, must_close;
        std::optional<std::uint64_t> declared;
        bool body, length, chunked, keep;
    };
    const row rows[] = {
        // A length known: Content-Length, keep-alive as asked.
        {200, 11, true, false, 5, true, true, false, true},
        {200, 10, true, false, 5, true, true, false, true},
        {200, 11, false, false, 5, true, true, false, false},
        {200, 11, true, true, 5, true, true, false, false},
        // Unknown length: chunked in 1.1; in 1.0 the close ends the body.
        {200, 11, true, false, std::nullopt, true, false, true, true},
        {200, 10, true, false, std::nullopt, true, false, false, false},
        {500, 11, true, true, std::nullopt, true, false, true, false},
        // No body whatever was declared: 204, 304 (and 1xx, never final).
        {204, 11, true, false, 10, false, false, false, true},
        {304, 10, true, false, std::nullopt, false, false, false, true},
        {101, 11, true, false, std::nullopt, false, false, false, true},
        {200, 11, true, false, 0, true, true, false, true},
    };
    for (const row& r : rows) {
        const framing f = frame(r.status, r.version, r.keep_asked, r.must_close, r.declared);
        BOOST_TEST_CONTEXT("status " << r.status << " HTTP/" << r.version / 10 << "." << r.version % 10
                                     << " keep " << r.keep_asked << " close " << r.must_close)
        {
            BOOST_TEST(f.body == r.body);
            BOOST_TEST(f.length == r.length);
            BOOST_TEST(f.chunked == r.chunked);
            BOOST_TEST(f.keep == r.keep);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
