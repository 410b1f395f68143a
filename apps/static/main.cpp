// fapws-static: serve a directory, no Python.
//   fapws-static [--bind HOST:PORT]... [--max-age S] [--listing] [--access-log FILE] DIR
#include <fapws/server.hpp>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

namespace {

constexpr const char* usage =
    "usage: fapws-static [OPTIONS] DIR\n"
    "Serve DIR over HTTP/1.1 with sendfile, ranges, ETags and precompressed variants.\n\n"
    "  -b, --bind ADDR       HOST:PORT, [IPv6]:PORT, unix:PATH or fd:N (repeatable;\n"
    "                        default 127.0.0.1:8080)\n"
    "      --max-age S       Cache-Control: max-age=S\n"
    "      --listing         list directories without index.html\n"
    "      --follow-symlinks allow symlinks that leave DIR\n"
    "      --access-log FILE access log (- for stdout)\n"
    "      --reuse-port      SO_REUSEPORT\n"
    "      --log-level L     debug, info, warning, error, off (default info)\n"
    "  -h, --help            this text\n";

[[noreturn]] void bad(const std::string& msg)
{
    std::cerr << "fapws-static: error: " << msg << '\n';
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv)
{
    std::vector<std::string> binds;
    fapws::static_options opt;
    fapws::listen_options lopt;
    std::string dir, access_log;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc)
                bad(a + " needs a value");
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            std::cout << usage;
            return 0;
        } else if (a == "-b" || a == "--bind") {
            binds.push_back(value());
        } else if (a == "--max-age") {
            std::string v = value();
            char* end = nullptr;
            long s = std::strtol(v.c_str(), &end, 10);
            if (v.empty() || *end || s < 0)
                bad("invalid --max-age '" + v + "'");
            opt.max_age = s;
        } else if (a == "--listing") {
            opt.listing = true;
        } else if (a == "--follow-symlinks") {
            opt.follow_outside_symlinks = true;
        } else if (a == "--access-log") {
            access_log = value();
        } else if (a == "--reuse-port") {
            lopt.reuse_port = true;
        } else if (a == "--log-level") {
            fapws::log_level l;
            std::string v = value();
            if (!fapws::parse_log_level(v, l))
                bad("invalid --log-level '" + v + "'");
            fapws::set_log_level(l);
        } else if (!a.empty() && a[0] == '-') {
            bad("unknown option " + a + " (see --help)");
        } else if (dir.empty()) {
            dir = a;
        } else {
            bad("one directory only");
        }
    }
    if (dir.empty())
        bad("no directory given (see --help)");
    try {
        fapws::server srv;
        srv.static_files("/", dir, opt);
        if (!access_log.empty())
            srv.access_log(access_log);
        if (binds.empty())
            binds.push_back("127.0.0.1:8080");
        for (const auto& b : binds) {
            auto where = srv.listen(b, lopt);
            fapws::log_info("serving " + dir + " on " +
                            (where.unix_socket ? where.address
                                               : "http://" + where.address + ":" + std::to_string(where.port) + "/"));
        }
        srv.run();
    } catch (const fapws::setup_error& e) {
        bad(e.what());
    }
}
