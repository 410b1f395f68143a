// Reads the request corpus: test/requests/{valid,invalid}/*.http. A case is
// "# " comment lines (with "expect: STATUS", optionally "responses: N" and
// "environ: {json}", read by pytest), then the request, where escapes stand
// for bytes (\r \n \t \\ \xHH) and the file's own line breaks mean nothing.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fapws::test {

struct corpus_case {
    std::string name;
    std::string bytes;
    int expect = 0;
    int responses = 1;
};

inline std::string unescape(const std::string& s)
{
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\' || i + 1 == s.size()) {
            out.push_back(s[i]);
            continue;
        }
        char e = s[++i];
        switch (e) {
        case 'r': out.push_back('\r'); break;
        case 'n': out.push_back('\n'); break;
        case 't': out.push_back('\t'); break;
        case '\\': out.push_back('\\'); break;
        case 'x':
            out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16)));
            i += 2;
            break;
        default: throw std::runtime_error("bad escape \\" + std::string(1, e));
        }
    }
    return out;
}

inline corpus_case read_case(const std::filesystem::path& p)
{
    corpus_case c;
    c.name = p.parent_path().filename().string() + "/" + p.stem().string();
    std::ifstream in(p, std::ios::binary);
    std::string line, raw;
    while (std::getline(in, line)) {
        if (raw.empty() && line.rfind("# ", 0) == 0) {
            if (line.rfind("# expect: ", 0) == 0)
                c.expect = std::stoi(line.substr(10));
            else if (line.rfind("# responses: ", 0) == 0)
                c.responses = std::stoi(line.substr(13));
            continue;
        }
        raw += line;
    }
    c.bytes = unescape(raw);
    if (c.expect == 0)
        throw std::runtime_error(c.name + ": no '# expect:' line");
    return c;
}

// The corpus directory comes from FAPWS_REQUESTS (set by meson).
inline std::vector<corpus_case> load_corpus()
{
    const char* dir = std::getenv("FAPWS_REQUESTS");
    if (!dir)
        throw std::runtime_error("FAPWS_REQUESTS is not set");
    std::vector<corpus_case> cases;
    for (const char* kind : {"valid", "invalid"})
        for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(dir) / kind))
            if (e.path().extension() == ".http")
                cases.push_back(read_case(e.path()));
    std::sort(cases.begin(), cases.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    return cases;
}

}  // namespace fapws::test
