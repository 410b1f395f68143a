#include <fapws/static_files.hpp>

#include <fapws/error.hpp>

#include "detail/clock.hpp"

#include <boost/beast/core/string.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <unordered_map>
#include <vector>

namespace fapws {

namespace {

// A file's modification time: st_mtim in POSIX 2008, st_mtimespec on macOS.
const timespec& mtime(const struct stat& st) noexcept
{
#ifdef __APPLE__
    return st.st_mtimespec;
#else
    return st.st_mtim;
#endif
}

}  // namespace

namespace detail {

struct file_entry {
    int fd = -1;
    struct stat st {};
    std::string etag;
    std::string last_modified;
    std::string content;  // small files live here
    bool in_memory = false;
    std::int64_t checked_ms = 0;
    bool variants_known = false;
    std::shared_ptr<file_entry> gz, br;

    file_entry() = default;
    file_entry(const file_entry&) = delete;
    ~file_entry()
    {
        if (fd >= 0)
            ::close(fd);
    }
};

class static_cache {
public:
    static_cache(std::string root, static_options opt) : root_(std::move(root)), opt_(std::move(opt)) {}

    // The entry for a regular file at rel, or null with err set; is_dir for
    // directories.
    std::shared_ptr<file_entry> lookup(const std::string& rel, int& err, bool& is_dir);
    std::shared_ptr<file_entry> variant(const std::string& rel, const file_entry& orig, const char* ext);

    std::string root_;
    static_options opt_;

private:
    std::unordered_map<std::string, std::shared_ptr<file_entry>> map_;
};

std::shared_ptr<file_entry> static_cache::lookup(const std::string& rel, int& err, bool& is_dir)
{
    err = 0;
    is_dir = false;
    const std::int64_t now = now_ms();
    auto it = map_.find(rel);
    if (it != map_.end() && now - it->second->checked_ms < opt_.cache_ttl.count())
        return it->second;

    std::string full = rel.empty() ? root_ : root_ + "/" + rel;
    if (!opt_.follow_outside_symlinks) {
        char real[PATH_MAX];
        if (!::realpath(full.c_str(), real)) {
            err = errno;
            map_.erase(rel);
            return nullptr;
        }
        std::string_view r(real);
        if (!(r == root_ || (r.size() > root_.size() && r.compare(0, root_.size(), root_) == 0 &&
                             r[root_.size()] == '/'))) {
            err = ENOENT;  // a symlink out of the root: as if absent
            return nullptr;
        }
    }
    struct stat st;
    if (::stat(full.c_str(), &st) != 0) {
        err = errno;
        map_.erase(rel);
        return nullptr;
    }
    if (S_ISDIR(st.st_mode)) {
        is_dir = true;
        return nullptr;
    }
    if (!S_ISREG(st.st_mode)) {
        err = EACCES;
        return nullptr;
    }
    if (it != map_.end()) {
        const struct stat& o = it->second->st;
        if (o.st_ino == st.st_ino && o.st_size == st.st_size && mtime(o).tv_sec == mtime(st).tv_sec &&
            mtime(o).tv_nsec == mtime(st).tv_nsec) {
            it->second->checked_ms = now;
            return it->second;
        }
    }
    int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        return nullptr;
    }
    auto e = std::make_shared<file_entry>();
    e->fd = fd;
    ::fstat(fd, &e->st);
    char tag[80];
    std::snprintf(tag, sizeof tag, "\"%llx-%llx-%llx\"", static_cast<unsigned long long>(e->st.st_ino),
                  static_cast<unsigned long long>(e->st.st_size),
                  static_cast<unsigned long long>(mtime(e->st).tv_sec) * 1000000000ull +
                      static_cast<unsigned long long>(mtime(e->st).tv_nsec));
    e->etag = tag;
    e->last_modified = http_date(mtime(e->st).tv_sec);
    if (static_cast<std::uint64_t>(e->st.st_size) <= opt_.cache_small_file) {
        e->content.resize(static_cast<std::size_t>(e->st.st_size));
        std::size_t done = 0;
        while (done < e->content.size()) {
            ssize_t r = ::pread(fd, e->content.data() + done, e->content.size() - done, static_cast<off_t>(done));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            done += static_cast<std::size_t>(r);
        }
        e->content.resize(done);
        e->in_memory = true;
        ::close(fd);
        e->fd = -1;
    }
    e->checked_ms = now;
    if (map_.size() >= opt_.cache_entries)
        map_.clear();  // bounded: start over rather than track recency
    map_[rel] = e;
    return e;
}

std::shared_ptr<file_entry> static_cache::variant(const std::string& rel, const file_entry& orig, const char* ext)
{
    int err;
    bool dir;
    auto v = lookup(rel + ext, err, dir);
    // A variant older than its original is stale: never serve it.
    if (v && mtime(v->st).tv_sec >= mtime(orig.st).tv_sec)
        return v;
    return nullptr;
}

}  // namespace detail

namespace {

std::string_view mime_type(std::string_view name)
{
    static const std::pair<std::string_view, std::string_view> table[] = {
        {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"}, {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"}, {"json", "application/json"},
        {"txt", "text/plain; charset=utf-8"}, {"md", "text/markdown; charset=utf-8"},
        {"csv", "text/csv; charset=utf-8"}, {"xml", "application/xml"},
        {"svg", "image/svg+xml"}, {"png", "image/png"}, {"jpg", "image/jpeg"}, {"jpeg", "image/jpeg"},
        {"gif", "image/gif"}, {"webp", "image/webp"}, {"avif", "image/avif"}, {"ico", "image/x-icon"},
        {"wasm", "application/wasm"}, {"pdf", "application/pdf"}, {"zip", "application/zip"},
        {"gz", "application/gzip"}, {"tar", "application/x-tar"}, {"mp4", "video/mp4"},
        {"webm", "video/webm"}, {"mp3", "audio/mpeg"}, {"ogg", "audio/ogg"}, {"wav", "audio/wav"},
        {"woff", "font/woff"}, {"woff2", "font/woff2"}, {"ttf", "font/ttf"}, {"otf", "font/otf"},
        {"map", "application/json"}, {"webmanifest", "application/manifest+json"},
    };
    auto slash = name.rfind('/');
    auto dot = name.rfind('.');
    if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash))
        return "application/octet-stream";
    std::string_view ext = name.substr(dot + 1);
    for (const auto& [e, t] : table)
        if (boost::beast::iequals(e, ext))
            return t;
    return "application/octet-stream";
}

// RFC 9110 section 8.8.3.2: weak comparison for If-None-Match.
bool etag_listed(std::string_view header, std::string_view etag)
{
    if (header.find('*') != std::string_view::npos && header.find('"') == std::string_view::npos)
        return true;
    std::size_t pos = 0;
    while (pos < header.size()) {
        auto q1 = header.find('"', pos);
        if (q1 == std::string_view::npos)
            break;
        auto q2 = header.find('"', q1 + 1);
        if (q2 == std::string_view::npos)
            break;
        if (header.substr(q1, q2 - q1 + 1) == etag)
            return true;
        pos = q2 + 1;
    }
    return false;
}

// IMF-fixdate only ("Sun, 06 Nov 1994 08:49:37 GMT"); others count as absent.
bool parse_http_date(std::string_view s, std::time_t& out)
{
    std::string text(s);
    std::tm tm{};
    const char* end = ::strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return false;
    out = ::timegm(&tm);
    return true;
}

bool accepts(std::string_view accept_encoding, std::string_view coding)
{
    std::size_t pos = 0;
    while (pos <= accept_encoding.size()) {
        auto comma = accept_encoding.find(',', pos);
        std::string_view item = accept_encoding.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        while (!item.empty() && item.front() == ' ')
            item.remove_prefix(1);
        auto semi = item.find(';');
        std::string_view name = item.substr(0, semi);
        while (!name.empty() && name.back() == ' ')
            name.remove_suffix(1);
        if (boost::beast::iequals(name, coding)) {
            if (semi == std::string_view::npos)
                return true;
            std::string_view q = item.substr(semi + 1);
            auto eq = q.find('=');
            return eq == std::string_view::npos || std::strtod(std::string(q.substr(eq + 1)).c_str(), nullptr) > 0;
        }
        if (comma == std::string_view::npos)
            break;
        pos = comma + 1;
    }
    return false;
}

std::string html_escape(std::string_view s)
{
    std::string out;
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out.push_back(c);
        }
    }
    return out;
}

std::string url_escape(std::string_view s)
{
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/')
            out.push_back(static_cast<char>(c));
        else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        }
    }
    return out;
}

void plain(response& res, int status, std::string_view text)
{
    res.status(status);
    res.header("Content-Type", "text/plain; charset=utf-8");
    res.body_ref(text);
}

}  // namespace

bool normalise_path(std::string_view raw, std::string& out)
{
    const std::string decoded = percent_decode(raw);
    out.clear();
    std::size_t pos = 0;
    while (pos <= decoded.size()) {
        auto slash = decoded.find('/', pos);
        std::string_view seg = std::string_view(decoded).substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
        if (seg.find('\0') != std::string_view::npos || seg.find('\\') != std::string_view::npos)
            return false;
        if (seg == "..")
            return false;
        if (!seg.empty() && seg != ".") {
            if (!out.empty())
                out.push_back('/');
            out.append(seg);
        }
        if (slash == std::string::npos)
            break;
        pos = slash + 1;
    }
    return true;
}

namespace {

struct byte_range {
    int status = 200;  // 200: ignore the header; 206: [first, last]; 416
    std::uint64_t first = 0, last = 0;
};

bool parse_digits(std::string_view s, std::uint64_t& v) noexcept
{
    if (s.empty())
        return false;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// One byte range (RFC 9110 section 14.1.1): "bytes=FIRST-[LAST]" or
// "bytes=-SUFFIX", digits only. Anything else, several ranges included, is
// ignored (200), as the RFC allows. A zero-length file satisfies no range.
byte_range parse_range(std::string_view header, std::uint64_t size) noexcept
{
    byte_range r;
    if (header.size() < 6 || !boost::beast::iequals(header.substr(0, 6), "bytes="))
        return r;
    std::string_view spec = header.substr(6);
    while (!spec.empty() && (spec.front() == ' ' || spec.front() == '\t'))
        spec.remove_prefix(1);
    while (!spec.empty() && (spec.back() == ' ' || spec.back() == '\t'))
        spec.remove_suffix(1);
    auto dash = spec.find('-');
    if (dash == std::string_view::npos)
        return r;
    std::uint64_t first = 0, last = 0;
    if (dash == 0) {
        if (!parse_digits(spec.substr(1), last))
            return r;
        if (last == 0 || size == 0) {
            r.status = 416;
            return r;
        }
        r.first = last >= size ? 0 : size - last;
        r.last = size - 1;
        r.status = 206;
        return r;
    }
    if (!parse_digits(spec.substr(0, dash), first))
        return r;
    std::string_view rest = spec.substr(dash + 1);
    if (rest.empty())
        last = UINT64_MAX;
    else if (!parse_digits(rest, last) || last < first)
        return r;
    if (first >= size) {
        r.status = 416;
        return r;
    }
    r.first = first;
    r.last = std::min(last, size - 1);
    r.status = 206;
    return r;
}

}  // namespace

static_files::static_files(const std::string& root, static_options opt)
{
    char real[PATH_MAX];
    struct stat st;
    if (!::realpath(root.c_str(), real) || ::stat(real, &st) != 0 || !S_ISDIR(st.st_mode) ||
        ::access(real, R_OK | X_OK) != 0)
        throw setup_error("static directory '" + root + "' is not a readable directory");
    cache_ = std::make_shared<detail::static_cache>(real, std::move(opt));
}

void static_files::operator()(const request& req, response& res) const
{
    detail::static_cache& c = *cache_;
    const static_options& opt = c.opt_;
    if (req.method() != "GET" && req.method() != "HEAD") {
        res.status(405);
        res.header("Allow", "GET, HEAD");
        res.header("Content-Type", "text/plain; charset=utf-8");
        res.body_ref("Method Not Allowed\n");
        return;
    }
    std::string rel;
    if (!normalise_path(req.path_info(), rel))
        return plain(res, 404, "Not Found\n");

    int err;
    bool is_dir;
    auto entry = c.lookup(rel, err, is_dir);
    if (is_dir) {
        std::string_view raw = req.path();
        if (raw.empty() || raw.back() != '/') {
            // "/docs" -> "/docs/" so relative links resolve. Runs of '/'
            // are folded: "//evil.com" must not become a network-path
            // reference (an open redirect).
            std::string loc;
            for (char ch : raw)
                if (ch != '/' || loc.empty() || loc.back() != '/')
                    loc.push_back(ch);
            loc += "/";
            if (!req.query().empty())
                loc += "?" + std::string(req.query());
            res.status(301);
            res.header("Location", loc);
            res.header("Content-Type", "text/plain; charset=utf-8");
            res.body_ref("Moved Permanently\n");
            return;
        }
        std::string index = rel.empty() ? "index.html" : rel + "/index.html";
        bool index_is_dir = false;
        if (opt.index)
            entry = c.lookup(index, err, index_is_dir);
        if (opt.index && entry) {
            rel = index;
        } else if (opt.listing) {
            std::string dir = rel.empty() ? c.root_ : c.root_ + "/" + rel;
            std::vector<std::string> names;
            if (DIR* d = ::opendir(dir.c_str())) {
                while (dirent* de = ::readdir(d))
                    if (de->d_name[0] != '.')
                        names.emplace_back(de->d_name);
                ::closedir(d);
            }
            std::sort(names.begin(), names.end());
            std::string title = html_escape(std::string(req.script_name()) + std::string(req.path_info()));
            std::string html = "<!doctype html>\n<meta charset=\"utf-8\"><title>Index of " + title +
                               "</title>\n<h1>Index of " + title + "</h1>\n<ul>\n";
            for (const auto& n : names)
                html += "<li><a href=\"" + html_escape(url_escape(n)) + "\">" + html_escape(n) + "</a></li>\n";
            html += "</ul>\n";
            res.header("Content-Type", "text/html; charset=utf-8");
            res.body(std::move(html));
            return;
        } else {
            return plain(res, 404, "Not Found\n");
        }
    }
    if (!entry) {
        if (err == EACCES || err == EPERM)
            return plain(res, 403, "Forbidden\n");
        return plain(res, 404, "Not Found\n");
    }

    // Precompressed variant, when accepted and not older than the file.
    std::shared_ptr<detail::file_entry> body = entry;
    const char* encoding = nullptr;
    bool has_variants = false;
    if (opt.precompressed) {
        if (!entry->variants_known) {
            entry->br = c.variant(rel, *entry, ".br");
            entry->gz = c.variant(rel, *entry, ".gz");
            entry->variants_known = true;
        }
        has_variants = entry->br || entry->gz;
        std::string_view ae = req.header("accept-encoding");
        if (entry->br && accepts(ae, "br")) {
            body = entry->br;
            encoding = "br";
        } else if (entry->gz && accepts(ae, "gzip")) {
            body = entry->gz;
            encoding = "gzip";
        }
    }
    std::string etag = body->etag;
    if (encoding) {
        etag.pop_back();
        etag += std::string("-") + (encoding[0] == 'b' ? "br" : "gz") + "\"";
    }
    auto common = [&] {
        res.header("ETag", etag);
        res.header("Last-Modified", body->last_modified);
        if (opt.max_age)
            res.header("Cache-Control", "max-age=" + std::to_string(*opt.max_age));
        if (has_variants)
            res.header("Vary", "Accept-Encoding");
    };

    // RFC 9110 section 13.2.2: If-None-Match first; If-Modified-Since only without it.
    std::string_view inm = req.header("if-none-match");
    bool not_modified = false;
    if (!inm.empty()) {
        not_modified = etag_listed(inm, etag);  // W/"x" lists "x": weak comparison
    } else if (std::string_view ims = req.header("if-modified-since"); !ims.empty()) {
        std::time_t t;
        not_modified = parse_http_date(ims, t) && mtime(body->st).tv_sec <= t;
    }
    if (not_modified) {
        res.status(304);
        common();
        return;
    }

    const std::uint64_t size = static_cast<std::uint64_t>(body->st.st_size);
    std::uint64_t offset = 0, length = size;
    int status = 200;
    std::string_view range = req.header("range");
    if (!range.empty()) {
        std::string_view if_range = req.header("if-range");
        bool honour = true;
        if (!if_range.empty()) {
            // Strong comparison for an entity tag; exact match for a date.
            honour = if_range.front() == '"' ? if_range == etag : if_range == body->last_modified;
        }
        if (honour) {
            byte_range r = parse_range(range, size);
            if (r.status == 416) {
                res.status(416);
                res.header("Content-Range", "bytes */" + std::to_string(size));
                common();
                return;
            }
            if (r.status == 206) {
                status = 206;
                offset = r.first;
                length = r.last - r.first + 1;
            }
        }
    }

    res.status(status);
    res.header("Content-Type", mime_type(rel));
    if (encoding)
        res.header("Content-Encoding", encoding);
    res.header("Accept-Ranges", "bytes");
    if (status == 206)
        res.header("Content-Range", "bytes " + std::to_string(offset) + "-" + std::to_string(offset + length - 1) +
                                        "/" + std::to_string(size));
    common();
    if (body->in_memory) {
        res.body_ref(std::string_view(body->content).substr(static_cast<std::size_t>(offset),
                                                            static_cast<std::size_t>(length)));
        res.hold(body);
    } else {
        res.file(body->fd, offset, length, body);
    }
}

}  // namespace fapws
