// The band mask written as the literal rules of docs/semantics.md, with no division: the tests
// compare core::CompressedBand (floor-based) against these.
#pragma once

#include <cstdint>
#include <optional>

namespace ccattn::test {

struct LiteralBand {
    std::int64_t seqlen_k = 0;
    bool causal = false;
    std::int64_t cf = 1;
    std::int64_t delta = 0;
    std::optional<std::int64_t> window;  // unset: unlimited

    // Causal: j*cf <= i + delta. Window: j >= floor((i + delta) / cf) - w, i.e. (j + w + 1)*cf > i + delta.
    bool visible(std::int64_t i, std::int64_t j) const {
        if (j < 0 || j >= seqlen_k) return false;
        if (causal && j * cf > i + delta) return false;
        if (window && (j + *window + 1) * cf <= i + delta) return false;
        return true;
    }
};

}  // namespace ccattn::test
