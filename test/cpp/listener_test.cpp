#include <fapws/server.hpp>

#include "support.hpp"

#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

using namespace fapws;
using namespace fapws::test;

BOOST_AUTO_TEST_SUITE(listener_suite)

BOOST_AUTO_TEST_CASE(unix_socket_path_is_served_and_removed)
{
    std::string path = "/tmp/fapws-test-" + std::to_string(::getpid()) + ".sock";
    {
        running_server s(running_server::quiet(), hello, "unix:" + path);
        client c(path);
        BOOST_TEST(c.get("/").body == "Hello, World!");
    }
    struct stat st;
    BOOST_TEST(::stat(path.c_str(), &st) != 0);
}

BOOST_AUTO_TEST_CASE(abstract_unix_socket)
{
    std::string name = "@fapws-test-" + std::to_string(::getpid());
    running_server s(running_server::quiet(), hello, "unix:" + name);
    client c(name);
    BOOST_TEST(c.get("/").body == "Hello, World!");
}

BOOST_AUTO_TEST_CASE(ipv6_loopback)
{
    server srv(running_server::quiet());
    listener_info info;
    try {
        info = srv.listen("[::1]:0");
    } catch (const setup_error&) {
        BOOST_TEST_MESSAGE("no IPv6 here; skipped");
        return;
    }
    BOOST_TEST(info.address == "::1");
    BOOST_TEST(info.port != 0);
}

BOOST_AUTO_TEST_CASE(adopted_fd)
{
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    BOOST_REQUIRE(::listen(fd, 16) == 0);
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    running_server s(running_server::quiet(), hello, "fd:" + std::to_string(fd));
    client c(ntohs(sa.sin_port));
    BOOST_TEST(c.get("/").status == 200);
}

BOOST_AUTO_TEST_CASE(bad_addresses_are_setup_errors)
{
    server srv(running_server::quiet());
    BOOST_CHECK_THROW(srv.listen("nonsense"), setup_error);
    BOOST_CHECK_THROW(srv.listen("127.0.0.1:99999"), setup_error);
    BOOST_CHECK_THROW(srv.listen("fd:x"), setup_error);
    BOOST_CHECK_THROW(srv.listen("fd:0"), setup_error);
    auto info = srv.listen("127.0.0.1:0");
    BOOST_CHECK_THROW(srv.listen("127.0.0.1:" + std::to_string(info.port)), setup_error);
}

BOOST_AUTO_TEST_CASE(reuse_port_lets_two_servers_share)
{
    server a(running_server::quiet()), b(running_server::quiet());
    listen_options opt;
    opt.reuse_port = true;
    auto info = a.listen_tcp("127.0.0.1", 0, opt);
    BOOST_CHECK_NO_THROW(b.listen_tcp("127.0.0.1", info.port, opt));
}

BOOST_AUTO_TEST_SUITE_END()
