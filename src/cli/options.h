// Command line options of one ccattn command: `--name value`, `--name=value` and `--flag`, each
// declared with its help text; typed getters name the option on bad values.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ccattn/status.h"

namespace ccattn::cli {

struct OptionSpec {
    std::string name;        // without the leading "--"
    std::string value_name;  // empty for a flag
    std::string help;
};

// A whole decimal integer (optional sign, nothing after it) that fits int64; false otherwise.
bool parse_int64(const std::string& text, std::int64_t& out);

class Options {
public:
    explicit Options(std::vector<OptionSpec> specs);

    // Parses argv[first..argc); "--help" / "-h" sets help_requested() and stops.
    Status parse(int argc, char** argv, int first);
    bool help_requested() const { return help_; }

    bool has(const std::string& name) const { return values_.count(name) != 0; }
    bool flag(const std::string& name) const { return has(name); }
    std::string text(const std::string& name, const std::string& fallback) const;

    // Each leaves `out` unchanged when the option is absent.
    Status integer(const std::string& name, std::int64_t min, std::int64_t max, std::int64_t& out) const;
    Status integer(const std::string& name, int min, int max, int& out) const;
    // A finite value that float represents (the library's scale is a float).
    Status real(const std::string& name, float& out) const;
    // One of `choices`, returned as its index.
    Status choice(const std::string& name, const std::vector<std::string>& choices, int& out) const;

    // "  --name VALUE   help" lines.
    std::string help_text() const;

private:
    const OptionSpec* find(const std::string& name) const;
    std::vector<OptionSpec> specs_;
    std::map<std::string, std::string> values_;
    bool help_ = false;
};

}  // namespace ccattn::cli
