// Fuzzes the whole HTTP session over real sockets: each input goes to a
// server running in this process through a loopback connection, which is
// then half-closed. The server must answer with a well-formed status line
// or close, never hang, never crash, and keep serving others.
//
// Built two ways:
// - with libFuzzer (./dev fuzz: clang, ASan and UBSan): coverage-guided;
// - as a standalone driver (./dev test): it replays the seed requests and
//   deterministic mutations of them (seeds/), a regression run in seconds.
#include <fapws/log.hpp>
#include <fapws/server.hpp>

#include <boost/asio/post.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

class counting_source final : public fapws::body_source {
public:
    explicit counting_source(int n) : left_(n) {}
    bool next(std::string_view& b) override
    {
        if (left_-- <= 0)
            return false;
        b = "block-of-stream\n";
        return true;
    }

private:
    int left_;
};

// Reads a streamed body 7 bytes at a time; answers with the count at the
// end, or (early) after the first read, then keeps reading until an error.
struct upload : std::enable_shared_from_this<upload> {
    upload(fapws::responder r, bool early) : r(std::move(r)), body(this->r.read_body()), early(early) {}
    static void start(fapws::responder r, bool early)
    {
        auto u = std::make_shared<upload>(std::move(r), early);
        if (u->body)
            u->read();
        else
            u->answer();  // a request without a body
    }
    void read()
    {
        body.async_read_some(boost::asio::buffer(buf), [self = shared_from_this()](fapws::error_code ec, std::size_t n) {
            self->got += n;
            if (self->early && !self->answered)
                self->answer();
            if (!ec)
                return self->read();
            if (ec == boost::asio::error::eof && !self->answered)
                self->answer();
        });
    }
    void answer()
    {
        answered = true;
        fapws::response res;
        res.body("got " + std::to_string(got) + "\n");
        r.send(std::move(res));
    }
    fapws::responder r;
    fapws::body_reader body;
    bool early;
    bool answered = false;
    std::uint64_t got = 0;
    char buf[7];
};

struct harness {
    fapws::server srv;
    std::uint16_t port = 0;
    std::thread loop;

    static fapws::config settings()
    {
        fapws::config c;
        c.handle_signals = false;
        c.body_limit = 1 << 20;
        c.body_memory_limit = 16 * 1024;  // spool path too
        c.header_limit = 8 * 1024;
        c.header_line_limit = 2 * 1024;
        c.header_timeout = 2s;
        c.io_timeout = 2s;
        return c;
    }

    harness() : srv(settings())
    {
        fapws::set_log_level(fapws::log_level::off);  // hostile input is expected here
        srv.route("/", [](const fapws::request&, fapws::response& res) { res.body_ref("hello\n"); });
        srv.route("/echo", [](const fapws::request& req, fapws::response& res) {
            std::string body(static_cast<std::size_t>(req.body().size()), '\0');
            req.body().read_at(0, body.data(), body.size());
            res.header("X-Method", req.method());
            res.body(std::move(body));
        });
        srv.route("/stream", [](const fapws::request& req, fapws::response& res) {
            res.stream(std::make_unique<counting_source>(static_cast<int>(req.query().size() % 8)));
        });
        srv.route("/boom", [](const fapws::request&, fapws::response&) -> void {
            throw std::runtime_error("handler failure");
        });
        srv.route("/informational", [](const fapws::request&, fapws::response& res) { res.status(101); });
        // The asynchronous paths (issue #10): an answer on the next turn,
        // and a streamed body written in three pieces.
        srv.route("/async", [](fapws::responder r) {
            auto ex = r.get_executor();
            boost::asio::post(ex, [r = std::move(r)]() mutable {
                fapws::response res;
                res.body("async " + std::to_string(r.req().body().size()) + "\n");
                r.send(std::move(res));
            });
        });
        srv.route("/push", [](fapws::responder r) {
            fapws::error_code ec;
            auto w = std::make_shared<fapws::body_writer>(r.start_stream(fapws::response(), ec));
            w->async_write("one\n", [w](fapws::error_code) {
                w->async_write("two\n", [w](fapws::error_code) { w->async_finish([w](fapws::error_code) {}); });
            });
        });
        // Streamed request bodies (route_options::stream_body): read to the
        // end in small reads, answered after its first read, or capped.
        fapws::route_options streamed;
        streamed.stream_body = true;
        srv.route("/upload", [](fapws::responder r) { upload::start(std::move(r), false); }, streamed);
        srv.route("/upload-early", [](fapws::responder r) { upload::start(std::move(r), true); }, streamed);
        fapws::route_options capped = streamed;
        capped.body_limit = 100;
        srv.route("/upload-capped", [](fapws::responder r) { upload::start(std::move(r), false); }, capped);
        srv.route("/smuggled", [](const fapws::request& req, fapws::response& res) {
            // Reached only as a request of its own; a body parsed as a
            // request would come with no Host of its own or after a 400.
            res.body_ref("smuggled\n");
            (void)req;
        });
        port = srv.listen("127.0.0.1:0").port;
        loop = std::thread([this] { srv.run(); });
    }
};

harness& the_server()
{
    static harness* h = new harness;  // never destroyed: fuzzers exit abruptly
    return *h;
}

[[noreturn]] void fail(const char* why, std::string_view input)
{
    std::fprintf(stderr, "session_fuzz: %s; input (%zu bytes):\n", why, input.size());
    std::fwrite(input.data(), 1, std::min<std::size_t>(input.size(), 2000), stderr);
    std::fputc('\n', stderr);
    std::abort();
}

int connect_loopback(std::uint16_t port)
{
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = -1;
    for (int attempt = 0;; ++attempt) {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0)
            break;
        // libFuzzer's own signals interrupt connect(): a fresh socket, again.
        if (errno != EINTR || attempt == 10) {
            std::perror("session_fuzz: connect");
            std::abort();
        }
        ::close(fd);
    }
    timeval tv{5, 0};  // longer than every server timeout: a hang is a bug
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

// "|~|" in an input splits it: the parts go out 1 ms apart, so the server
// reads them separately (heads, chunk lines and trailers cut mid-way; the
// obs-fold crash of issue #9 needed a body in a later read).
constexpr std::string_view split_marker = "|~|";

// Sends the input, half-closes, reads until the server closes.
std::string exchange(std::string_view input)
{
    int fd = connect_loopback(the_server().port);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::string_view rest = input;
    bool open = true;
    while (open) {
        auto cut = rest.find(split_marker);
        std::string_view part = rest.substr(0, cut);
        std::size_t done = 0;
        while (done < part.size()) {
            ssize_t w = ::send(fd, part.data() + done, part.size() - done, MSG_NOSIGNAL);
            if (w <= 0) {
                open = false;  // the server may close early (an error answer): fine
                break;
            }
            done += static_cast<std::size_t>(w);
        }
        if (cut == std::string_view::npos)
            break;
        rest.remove_prefix(cut + split_marker.size());
        std::this_thread::sleep_for(1ms);
    }
    ::shutdown(fd, SHUT_WR);
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            out.append(buf, static_cast<std::size_t>(n));
            if (out.size() > (64u << 20))
                fail("unbounded response", input);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            fail("server did not close within 5 s", input);
        break;  // EOF or reset
    }
    ::close(fd);
    return out;
}

// "HTTP/1.1 NNN " with a known class, or nothing at all.
int first_status(std::string_view out, std::string_view input)
{
    if (out.empty())
        return 0;
    if (out.size() < 13 || out.substr(0, 9) != "HTTP/1.1 " || out[12] != ' ')
        fail("response does not start with a status line", input);
    int code = 0;
    for (int i = 9; i < 12; ++i) {
        if (out[i] < '0' || out[i] > '9')
            fail("status code is not three digits", input);
        code = code * 10 + (out[i] - '0');
    }
    if (code < 100 || code > 599)
        fail("status code out of range", input);
    return code;
}

std::map<int, long> statuses;
long inputs = 0;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    std::string_view input(reinterpret_cast<const char*>(data), size);
    ++statuses[first_status(exchange(input), input)];
    // Every so often: is the server still serving others?
    if (++inputs % 64 == 0) {
        std::string_view probe = "GET / HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n";
        if (first_status(exchange(probe), probe) != 200)
            fail("server stopped answering a plain GET", input);
    }
    return 0;
}

#ifndef FAPWS_LIBFUZZER

namespace {

std::vector<std::string> seeds;

void load_seeds(const char* dir)
{
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        std::ifstream f(e.path(), std::ios::binary);
        seeds.emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    }
    std::sort(seeds.begin(), seeds.end());  // directory order varies
    if (seeds.empty()) {
        std::fprintf(stderr, "session_fuzz: no seeds in %s\n", dir);
        std::exit(2);
    }
}

const std::vector<std::string> tokens = {
    "\r\n", "\r\n\r\n", "\n", "\r", ":", " ", "\t", std::string(1, '\0'), "\x7f", "\xff",
    "Content-Length: ", "Transfer-Encoding: chunked\r\n", "Content-Length: 0\r\n", "-1", "+5",
    "18446744073709551616", "ffffffffffffffff", "0\r\n\r\n", "HTTP/1.1", "HTTP/2.0", "HTTP/1.0",
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "Expect: 100-continue\r\n", "Connection: close\r\n",
    "Host: x\r\n", "%00", "%2e%2e/", "/../", "chunked", "gzip, chunked", ";ext=1",
    "\r\n ", "\r\n\t", "|~|", "chunked, chunked", "identity, ", ",,", "0\r\nX-T: 1\r\n\r\n",
    "http://a.example", "x://y", "* ", "CONNECT ", "OPTIONS ", "/informational", "\x85", "\xa0", "@",
    "/async", "/push", "/upload", "/upload-early", "/upload-capped",
    std::string(3000, 'A'), std::string(9000, 'B'),
};

std::string mutate(std::mt19937& rng)
{
    auto pick = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };
    std::string s = seeds[pick(seeds.size())];
    const int steps = 1 + static_cast<int>(pick(6));
    for (int i = 0; i < steps; ++i) {
        std::size_t at = s.empty() ? 0 : pick(s.size() + 1);
        switch (pick(6)) {
        case 0:  // flip a byte
            if (!s.empty())
                s[pick(s.size())] ^= static_cast<char>(1u << pick(8));
            break;
        case 1:  // insert a token
            s.insert(at, tokens[pick(tokens.size())]);
            break;
        case 2:  // erase a range
            if (at < s.size())
                s.erase(at, 1 + pick(std::min<std::size_t>(s.size() - at, 32)));
            break;
        case 3:  // duplicate a range
            if (at < s.size())
                s.insert(at, s.substr(at, 1 + pick(std::min<std::size_t>(s.size() - at, 64))));
            break;
        case 4:  // splice another seed
            s.insert(at, seeds[pick(seeds.size())]);
            break;
        default:  // a random byte
            s.insert(at, 1, static_cast<char>(pick(256)));
            break;
        }
    }
    return s;
}

}  // namespace

// session_fuzz SEEDS_DIR [ITERATIONS [SEED]]
int main(int argc, char** argv)
{
    if (argc < 2) {
        std::fprintf(stderr, "usage: session_fuzz SEEDS_DIR [ITERATIONS [SEED]]\n");
        return 2;
    }
    load_seeds(argv[1]);
    long iterations = argc > 2 ? std::atol(argv[2]) : 3000;
    unsigned seed = argc > 3 ? static_cast<unsigned>(std::atol(argv[3])) : 20261127u;
    std::mt19937 rng(seed);
    for (const auto& s : seeds)
        LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
    for (long i = 0; i < iterations; ++i) {
        std::string s = mutate(rng);
        LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
    }
    std::printf("session_fuzz: %ld inputs (seed %u), first status:", inputs, seed);
    for (auto [code, n] : statuses)
        std::printf(" %d:%ld", code, n);
    std::printf("\n");
    harness& h = the_server();
    h.srv.stop();
    h.loop.join();
    auto c = h.srv.counters();
    std::printf("session_fuzz: server counted %llu requests, %llu connections\n",
                static_cast<unsigned long long>(c.requests), static_cast<unsigned long long>(c.connections_accepted));
    std::fflush(stdout);
    std::_Exit(0);
}

#endif
