#include <fapws/router.hpp>

#include "support.hpp"

#include <boost/test/unit_test.hpp>

using namespace fapws;

BOOST_AUTO_TEST_SUITE(router_suite)

BOOST_AUTO_TEST_CASE(longest_prefix_on_whole_segments)
{
    router r;
    int hit = 0;
    r.mount("/hello", [&](const request&, response&) { hit = 1; });
    r.mount("/hello/world/", [&](const request&, response&) { hit = 2; });
    r.mount("/", [&](const request&, response&) { hit = 3; });
    struct row {
        const char* path;
        std::size_t prefix;
    } rows[] = {
        {"/hello", 6}, {"/hello/", 6}, {"/hello/x", 6}, {"/hello/world", 12},
        {"/hello/world/x", 12}, {"/helloworld", 0}, {"/", 0}, {"/other", 0},
    };
    for (auto& rw : rows) {
        BOOST_TEST_CONTEXT(rw.path)
        {
            auto m = r.find(rw.path);
            BOOST_REQUIRE(m.target);
            BOOST_TEST(m.prefix_len == rw.prefix);
        }
    }
}

BOOST_AUTO_TEST_CASE(no_match_without_catch_all)
{
    router r;
    r.mount("/api", [](const request&, response&) {});
    BOOST_TEST(!r.find("/apix").target);
    BOOST_TEST(!r.find("/").target);
    r.fallback([](const request&, response&) {});
    BOOST_TEST(r.find("/apix").target);
}

BOOST_AUTO_TEST_CASE(script_name_and_path_info_over_http)
{
    using namespace fapws::test;
    running_server s(running_server::quiet(), [](server& srv) {
        srv.route("/app", [](const request& req, response& res) {
            res.body(std::string(req.script_name()) + "|" + std::string(req.path_info()) + "|" +
                     std::string(req.query()));
        });
    });
    client c(s.port());
    BOOST_TEST(c.get("/app/a/b?x=1").body == "/app|/a/b|x=1");
    BOOST_TEST(c.get("/app").body == "/app||");
    BOOST_TEST(c.get("/apple").status == 404);
    BOOST_TEST(c.get("/").status == 404);
}

BOOST_AUTO_TEST_SUITE_END()
