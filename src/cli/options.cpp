#include "cli/options.h"

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <cctype>
#include <cmath>
#include <cstdlib>

namespace ccattn::cli {

bool parse_int64(const std::string& text, std::int64_t& out) {
    if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;  // strtoll skips spaces
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (*end != '\0' || errno == ERANGE) return false;
    out = v;
    return true;
}

Options::Options(std::vector<OptionSpec> specs) : specs_(std::move(specs)) {}

const OptionSpec* Options::find(const std::string& name) const {
    for (const OptionSpec& s : specs_)
        if (s.name == name) return &s;
    return nullptr;
}

Status Options::parse(int argc, char** argv, int first) {
    for (int a = first; a < argc; ++a) {
        std::string arg = argv[a];
        if (arg == "--help" || arg == "-h") {
            help_ = true;
            return Status::success();
        }
        if (arg.rfind("--", 0) != 0) return Status::invalid(arg, "unexpected argument (options start with --)");
        std::string name = arg.substr(2), value;
        const std::size_t eq = name.find('=');
        const bool inline_value = eq != std::string::npos;
        if (inline_value) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
        }
        const OptionSpec* spec = find(name);
        if (spec == nullptr) return Status::invalid("--" + name, "unknown option (see --help)");
        if (spec->value_name.empty()) {
            if (inline_value) return Status::invalid("--" + name, "is a flag and takes no value");
        } else if (!inline_value) {
            if (a + 1 >= argc) return Status::invalid("--" + name, "needs a value " + spec->value_name);
            value = argv[++a];
        }
        if (has(name)) return Status::invalid("--" + name, "given twice");
        values_[name] = value;
    }
    return Status::success();
}

std::string Options::text(const std::string& name, const std::string& fallback) const {
    auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
}

Status Options::integer(const std::string& name, std::int64_t min, std::int64_t max, std::int64_t& out) const {
    auto it = values_.find(name);
    if (it == values_.end()) return Status::success();
    const std::string& s = it->second;
    const std::size_t sign = !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0;
    if (s.size() == sign || s.find_first_not_of("0123456789", sign) != std::string::npos)
        return Status::invalid("--" + name, "expected an integer, got '" + s + "'");
    std::int64_t v = 0;  // digits that overflow int64 are out of range too
    if (!parse_int64(s, v) || v < min || v > max)
        return Status::invalid("--" + name,
                               "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " + s);
    out = v;
    return Status::success();
}

Status Options::integer(const std::string& name, int min, int max, int& out) const {
    std::int64_t v = out;
    Status s = integer(name, std::int64_t(min), std::int64_t(max), v);
    if (s.ok()) out = int(v);
    return s;
}

Status Options::real(const std::string& name, float& out) const {
    auto it = values_.find(name);
    if (it == values_.end()) return Status::success();
    const std::string& s = it->second;
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s.c_str(), &end);
    const bool overflow = std::isfinite(v) ? std::fabs(v) > FLT_MAX : errno == ERANGE;  // "1e400" sets ERANGE, "inf" not
    if (s.empty() || std::isspace(static_cast<unsigned char>(s[0])) || *end != '\0' ||
        (!overflow && !std::isfinite(v)))
        return Status::invalid("--" + name, "expected a finite number, got '" + s + "'");
    if (overflow) return Status::invalid("--" + name, s + " overflows float (largest magnitude about 3.4e38)");
    out = float(v);
    return Status::success();
}

Status Options::choice(const std::string& name, const std::vector<std::string>& choices, int& out) const {
    auto it = values_.find(name);
    if (it == values_.end()) return Status::success();
    std::string all;
    for (std::size_t c = 0; c < choices.size(); ++c) {
        if (choices[c] == it->second) {
            out = int(c);
            return Status::success();
        }
        all += (c ? "|" : "") + choices[c];
    }
    return Status::invalid("--" + name, "must be one of " + all + ", got '" + it->second + "'");
}

std::string Options::help_text() const {
    std::size_t width = 0;
    for (const OptionSpec& s : specs_)
        width = std::max(width, s.name.size() + (s.value_name.empty() ? 0 : s.value_name.size() + 1));
    std::string out;
    for (const OptionSpec& s : specs_) {
        std::string left = "--" + s.name + (s.value_name.empty() ? "" : " " + s.value_name);
        out += "  " + left + std::string(width + 4 - left.size() + 2, ' ') + s.help + "\n";
    }
    return out;
}

}  // namespace ccattn::cli
