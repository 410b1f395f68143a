// The access log: one line per response, in Common or Combined Log Format
// or gunicorn-style atoms, buffered in the loop and written once a second
// (and on reopen and stop), never a write(2) per line.
#include <fapws/server.hpp>

#include "detail/clock.hpp"
#include "detail/server_impl.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace fapws {

namespace {

// Access-log fields are quoted: escape what could forge a line.
void append_escaped(std::string& out, std::string_view v)
{
    static constexpr char hex[] = "0123456789abcdef";
    for (unsigned char c : v) {
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(static_cast<char>(c));
        } else if (c < 0x20 || c >= 0x7f) {
            out.append("\\x");
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
}

}  // namespace

void server::impl::log_access(const request& req, int status, std::uint64_t bytes, std::int64_t started_us)
{
    if (!access_tokens_.empty())
        return log_custom(req, status, bytes, started_us);
    std::string& b = access_buf_;
    std::string peer = req.listener().unix_socket ? std::string("-") : req.remote_addr();
    b.append(peer.empty() ? "-" : peer);
    b.append(" - - ");
    b.append(detail::clf_time());
    b.append(" \"");
    append_escaped(b, req.method());
    b.push_back(' ');
    append_escaped(b, req.target());
    b.append(req.version() == 10 ? " HTTP/1.0\" " : " HTTP/1.1\" ");
    b.append(std::to_string(status));
    b.push_back(' ');
    if (bytes)
        b.append(std::to_string(bytes));
    else
        b.push_back('-');
    if (access_fmt_ == access_log_format::combined) {
        auto quoted = [&](std::string_view v) {
            b.append(" \"");
            if (v.empty())
                b.push_back('-');
            else
                append_escaped(b, v);
            b.push_back('"');
        };
        quoted(req.header("referer"));
        quoted(req.header("user-agent"));
    }
    b.push_back('\n');
    if (b.size() >= 64 * 1024)
        flush_access_log();
}

void server::impl::log_custom(const request& req, int status, std::uint64_t bytes, std::int64_t started_us)
{
    std::string& b = access_buf_;
    auto text = [&](std::string_view v) {
        if (v.empty())
            b.push_back('-');
        else
            append_escaped(b, v);
    };
    std::int64_t us = 0;
    if (access_timed_ && started_us)
        us = std::chrono::duration_cast<std::chrono::microseconds>(
                 std::chrono::steady_clock::now().time_since_epoch()).count() - started_us;
    for (const log_token& t : access_tokens_) {
        switch (t.atom) {
        case 0: b.append(t.text); break;
        case 'h': text(req.remote_addr()); break;
        case 'l':
        case 'u': b.push_back('-'); break;
        case 't': b.append(detail::clf_time()); break;
        case 'r':
            append_escaped(b, req.method());
            b.push_back(' ');
            append_escaped(b, req.target());
            b.append(req.version() == 10 ? " HTTP/1.0" : " HTTP/1.1");
            break;
        case 'm': append_escaped(b, req.method()); break;
        case 'U': append_escaped(b, req.path()); break;
        case 'q': append_escaped(b, req.query()); break;
        case 'H': b.append(req.version() == 10 ? "HTTP/1.0" : "HTTP/1.1"); break;
        case 's': b.append(std::to_string(status)); break;
        case 'b': b.append(bytes ? std::to_string(bytes) : std::string("-")); break;
        case 'B': b.append(std::to_string(bytes)); break;
        case 'f': text(req.header("referer")); break;
        case 'a': text(req.header("user-agent")); break;
        case 'T': b.append(std::to_string(us / 1000000)); break;
        case 'D': b.append(std::to_string(us)); break;
        case 'L': {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%.6f", static_cast<double>(us) / 1e6);
            b.append(buf);
            break;
        }
        case 'p': b.append(std::to_string(::getpid())); break;
        case 'i': text(req.header(t.text)); break;
        default: break;
        }
    }
    b.push_back('\n');
    if (b.size() >= 64 * 1024)
        flush_access_log();
}

void server::impl::flush_access_log()
{
    std::size_t done = 0;
    while (access_fd_ >= 0 && done < access_buf_.size()) {
        ssize_t w = ::write(access_fd_, access_buf_.data() + done, access_buf_.size() - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break;  // a full disk must not stop the server
        }
        done += static_cast<std::size_t>(w);
    }
    access_buf_.clear();
}

void server::access_log(const std::string& path, std::string_view format)
{
    std::vector<impl::log_token> tokens;
    bool timed = false;
    std::string_view f = format;
    while (!f.empty()) {
        auto at = f.find("%(");
        if (at != 0) {
            tokens.push_back({0, std::string(f.substr(0, at))});
            if (at == std::string_view::npos)
                break;
            f.remove_prefix(at);
        }
        auto end = f.find(")s");
        if (end == std::string_view::npos)
            throw setup_error("access log format: '%(' without ')s' in '" + std::string(format) + "'");
        std::string_view atom = f.substr(2, end - 2);
        if (atom.size() > 3 && atom.front() == '{' && atom.substr(atom.size() - 2) == "}i") {
            tokens.push_back({'i', std::string(atom.substr(1, atom.size() - 3))});
        } else if (atom.size() == 1 && std::string_view("hlutrmUqHsbBfaTDLp").find(atom[0]) != std::string_view::npos) {
            tokens.push_back({atom[0], {}});
            timed |= atom[0] == 'T' || atom[0] == 'D' || atom[0] == 'L';
        } else {
            throw setup_error("access log format: unknown atom %(" + std::string(atom) + ")s");
        }
        f.remove_prefix(end + 2);
    }
    access_log(path, access_log_format::common);
    impl_->access_tokens_ = std::move(tokens);
    impl_->access_timed_ = timed;
}

void server::access_log(const std::string& path, access_log_format fmt)
{
    impl& s = *impl_;
    s.access_tokens_.clear();
    s.access_timed_ = false;
    s.flush_access_log();
    if (s.access_owned_ && s.access_fd_ >= 0)
        ::close(s.access_fd_);
    s.access_fd_ = -1;
    s.access_owned_ = false;
    s.access_fmt_ = fmt;
    if (path.empty())
        return;
    if (path == "-") {
        s.access_fd_ = 1;
    } else {
        int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            throw setup_error("cannot open access log " + path + ": " + std::strerror(errno));
        s.access_fd_ = fd;
        s.access_owned_ = true;
    }
}

}  // namespace fapws
