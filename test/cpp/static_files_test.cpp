#include <fapws/static_files.hpp>

#include "support.hpp"

#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>

using namespace fapws;
using namespace fapws::test;
namespace fs = std::filesystem;

namespace {

struct tree {
    fs::path root = fs::temp_directory_path() / ("fapws-static-" + std::to_string(::getpid()));
    fs::path outside = fs::temp_directory_path() / ("fapws-outside-" + std::to_string(::getpid()));
    tree()
    {
        fs::remove_all(root);
        fs::create_directories(root / "sub");
        fs::create_directories(root / "empty");
        fs::create_directories(outside);
        write(root / "a.txt", "hello static\n");
        write(root / "sub" / "index.html", "<p>index</p>");
        write(root / "big.bin", std::string(200'000, 'b'));
        write(root / "app.js", std::string(3000, 'j'));
        write(root / "app.js.gz", "GZ");
        write(outside / "secret", "secret");
        fs::create_symlink(outside / "secret", root / "link");
    }
    ~tree()
    {
        fs::remove_all(root);
        fs::remove_all(outside);
    }
    static void write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(static_files_suite)

BOOST_AUTO_TEST_CASE(hostile_paths_are_refused_or_contained)
{
    struct row {
        const char* raw;
        bool ok;
        const char* normal;
    } rows[] = {
        {"/a.txt", true, "a.txt"},
        {"//a.txt", true, "a.txt"},
        {"/./sub/./index.html", true, "sub/index.html"},
        {"/sub%2findex.html", true, "sub/index.html"},
        {"/../etc/passwd", false, ""},
        {"/sub/../../etc/passwd", false, ""},
        {"/%2e%2e/etc/passwd", false, ""},
        {"/%2E%2E%2fetc", false, ""},
        {"/..%2f..%2fetc", false, ""},
        {"/a\\..\\b", false, ""},
        {"/a%5c..%5cb", false, ""},
        {"/a%00.txt", false, ""},
        {"/%252e%252e/x", true, "%2e%2e/x"},  // decoded once only
        {"/", true, ""},
        {"", true, ""},
    };
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT(r.raw)
        {
            std::string out;
            BOOST_TEST(normalise_path(r.raw, out) == r.ok);
            if (r.ok)
                BOOST_TEST(out == r.normal);
        }
    }
}

BOOST_AUTO_TEST_CASE(http_semantics)
{
    tree t;
    running_server s(running_server::quiet(), [&](server& srv) {
        static_options o;
        o.max_age = 60;
        srv.static_files("/s", t.root.string(), o);
    });
    client c(s.port());
    reply r = c.get("/s/a.txt");
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body == "hello static\n");
    BOOST_TEST(r.headers["content-type"] == "text/plain; charset=utf-8");
    BOOST_TEST(r.headers["cache-control"] == "max-age=60");
    BOOST_TEST(r.headers["accept-ranges"] == "bytes");
    std::string etag = r.headers["etag"];
    std::string lm = r.headers["last-modified"];
    BOOST_TEST(!etag.empty());

    BOOST_TEST(c.get("/s/a.txt", "If-None-Match: " + etag + "\r\n").status == 304);
    BOOST_TEST(c.get("/s/a.txt", "If-None-Match: W/" + etag + "\r\n").status == 304);
    BOOST_TEST(c.get("/s/a.txt", "If-Modified-Since: " + lm + "\r\n").status == 304);
    // If-None-Match wins over If-Modified-Since.
    BOOST_TEST(c.get("/s/a.txt", "If-None-Match: \"other\"\r\nIf-Modified-Since: " + lm + "\r\n").status == 200);

    reply part = c.get("/s/a.txt", "Range: bytes=0-4\r\n");
    BOOST_TEST(part.status == 206);
    BOOST_TEST(part.body == "hello");
    BOOST_TEST(part.headers["content-range"] == "bytes 0-4/13");
    BOOST_TEST(c.get("/s/a.txt", "Range: bytes=-3\r\n").body == "ic\n");
    BOOST_TEST(c.get("/s/a.txt", "Range: bytes=6-\r\n").body == "static\n");
    reply bad = c.get("/s/a.txt", "Range: bytes=100-200\r\n");
    BOOST_TEST(bad.status == 416);
    BOOST_TEST(bad.headers["content-range"] == "bytes */13");
    BOOST_TEST(c.get("/s/a.txt", "Range: bytes=0-4\r\nIf-Range: \"stale\"\r\n").status == 200);
    BOOST_TEST(c.get("/s/a.txt", "Range: bytes=0-4\r\nIf-Range: " + etag + "\r\n").status == 206);

    reply big = c.get("/s/big.bin", "Range: bytes=100000-100009\r\n");
    BOOST_TEST(big.body == std::string(10, 'b'));
    BOOST_TEST(c.get("/s/big.bin").body.size() == 200'000u);

    c.send("HEAD /s/big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    reply head = c.read(true);
    BOOST_TEST(head.headers["content-length"] == "200000");
    BOOST_TEST(c.get("/s/a.txt").body == "hello static\n");  // no stray bytes after HEAD

    reply gz = c.get("/s/app.js", "Accept-Encoding: gzip, br;q=0\r\n");
    BOOST_TEST(gz.body == "GZ");
    BOOST_TEST(gz.headers["content-encoding"] == "gzip");
    BOOST_TEST(gz.headers["vary"] == "Accept-Encoding");
    BOOST_TEST(gz.headers["content-type"] == "text/javascript; charset=utf-8");
    reply plainjs = c.get("/s/app.js");
    BOOST_TEST(plainjs.body.size() == 3000u);
    BOOST_TEST(plainjs.headers.count("content-encoding") == 0u);

    BOOST_TEST(c.get("/s/sub/").body == "<p>index</p>");
    reply redirect = c.get("/s/sub");
    BOOST_TEST(redirect.status == 301);
    BOOST_TEST(redirect.headers["location"] == "/s/sub/");
    BOOST_TEST(c.get("/s/empty/").status == 404);
    BOOST_TEST(c.get("/s/link").status == 404);
    BOOST_TEST(c.get("/s/../../etc/passwd").status == 404);
    BOOST_TEST(c.get("/s/%2e%2e/%2e%2e/etc/passwd").status == 404);
    BOOST_TEST(c.get("/s/nope").status == 404);
    c.send("POST /s/a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    reply post = c.read();
    BOOST_TEST(post.status == 405);
    BOOST_TEST(post.headers["allow"] == "GET, HEAD");
}

BOOST_AUTO_TEST_CASE(changed_file_is_revalidated)
{
    tree t;
    static_options o;
    o.cache_ttl = std::chrono::milliseconds(0);
    running_server s(running_server::quiet(), [&](server& srv) { srv.static_files("/", t.root.string(), o); });
    client c(s.port());
    BOOST_TEST(c.get("/a.txt").body == "hello static\n");
    tree::write(t.root / "a.txt", "changed, and longer\n");
    BOOST_TEST(c.get("/a.txt").body == "changed, and longer\n");
}

BOOST_AUTO_TEST_CASE(listing_escapes_names)
{
    tree t;
    tree::write(t.root / "empty" / "<b>&.txt", "x");
    static_options o;
    o.listing = true;
    running_server s(running_server::quiet(), [&](server& srv) { srv.static_files("/", t.root.string(), o); });
    client c(s.port());
    reply r = c.get("/empty/");
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body.find("&lt;b&gt;&amp;.txt") != std::string::npos);
    BOOST_TEST(r.body.find("<b>&") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(bad_root_is_setup_error)
{
    BOOST_CHECK_THROW(static_files("/no/such/dir"), setup_error);
}

BOOST_AUTO_TEST_CASE(issue_9_upload_is_refused_before_its_body_is_read)
{
    tree t;
    running_server s(running_server::quiet(), [&](server& srv) { srv.static_files("/", t.root.string()); });
    client c(s.port());
    c.send("POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n");
    reply r = c.read();
    BOOST_TEST(r.status == 405);  // not 100 Continue first
    BOOST_TEST(r.headers["allow"] == "GET, HEAD");
    BOOST_TEST(c.closed_by_peer());
}

BOOST_AUTO_TEST_CASE(issue_9_ranges_are_parsed_strictly)
{
    tree t;
    tree::write(t.root / "zero", "");
    running_server s(running_server::quiet(), [&](server& srv) { srv.static_files("/", t.root.string()); });
    client c(s.port());
    reply empty = c.get("/zero", "Range: bytes=-5\r\n");
    BOOST_TEST(empty.status == 416);
    BOOST_TEST(empty.headers["content-range"] == "bytes */0");
    BOOST_TEST(c.get("/zero", "Range: bytes=0-\r\n").status == 416);
    // Not one valid byte range: ignored, the whole file (RFC 9110 section 14.2).
    for (const char* bad : {"bytes=--5", "bytes=+5-9", "bytes=5-3", "bytes=0x1-2", "bytes=1- 2", "bytes=1-2,4-5",
                            "items=0-1", "bytes=99999999999999999999-"}) {
        reply r = c.get("/a.txt", std::string("Range: ") + bad + "\r\n");
        BOOST_TEST(r.status == 200, bad);
        BOOST_TEST(r.body == "hello static\n", bad);
    }
    BOOST_TEST(c.get("/a.txt", "Range: BYTES=0-0\r\n").body == "h");
}

BOOST_AUTO_TEST_CASE(issue_9_directory_redirect_never_points_off_site)
{
    tree t;
    fs::create_directories(t.root / "evil.com");
    running_server s(running_server::quiet(), [&](server& srv) { srv.static_files("/", t.root.string()); });
    client c(s.port());
    reply r = c.get("//evil.com");
    BOOST_TEST(r.status == 301);
    BOOST_TEST(r.headers["location"] == "/evil.com/");
    BOOST_TEST(c.get("///evil.com?x=1").headers["location"] == "/evil.com/?x=1");
}

BOOST_AUTO_TEST_SUITE_END()
