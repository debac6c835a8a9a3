// Bands at the limits validation accepts (docs/semantics.md: |delta| < 2^62, 1 <= cf < 2^31,
// 0 <= window < 2^31): every intermediate of the band arithmetic is then within int64. The offsets
// are chosen so that lo or hi still changes inside the first few hundred rows.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace ccattn::test {

struct BoundBand {
    bool causal;
    std::int64_t cf;
    std::int64_t delta;
    std::optional<std::int64_t> window;
};

inline std::vector<BoundBand> bands_at_validation_bounds() {
    const std::int64_t max_delta = (std::int64_t(1) << 62) - 1;
    const std::int64_t max_cf = (std::int64_t(1) << 31) - 1, max_window = max_cf;
    return {
        // floor((i + delta) / cf) steps from 2^31 - 1 to 2^31 at i = 100: lo steps from 5 to 6.
        {true, max_cf, (std::int64_t(1) << 31) * max_cf - 100, max_window - 5},
        // hi steps from 50 to 51 at i = 100; the window reaches past key 0.
        {true, max_cf, 50 * max_cf - 100, max_window},
        // the largest offsets: every key visible / every row empty
        {true, 1, max_delta, max_window},
        {true, 1, -max_delta, max_window},
        {false, 1, -max_delta, max_window},  // the window's left edge far left of key 0
        {false, 1, max_delta, std::int64_t(0)},  // ... and far right of the last key
        {true, max_cf, max_delta, std::nullopt},
        {true, max_cf, -max_delta, max_window},
        {false, max_cf, max_delta, max_window},
    };
}

}  // namespace ccattn::test
