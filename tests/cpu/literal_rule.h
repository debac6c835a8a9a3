// The causal band of docs/semantics.md as a literal rule, with no division: the CPU tests compare
// the library's band, its block-sparse lists and its outputs against it.
#pragma once

#include <cstdint>
#include <optional>

namespace ccattn::test {

// Causal: j*cf <= i + delta. Window: j >= floor((i + delta) / cf) - w, i.e. (j + w + 1)*cf > i + delta.
struct LiteralRule {
    std::int64_t cf = 1;
    std::int64_t delta = 0;
    std::optional<std::int64_t> window;
    bool operator()(std::int64_t i, std::int64_t j) const {
        if (j * cf > i + delta) return false;
        return !window || (j + *window + 1) * cf > i + delta;
    }
};

}  // namespace ccattn::test
