// The columns one thread holds of an MMA accumulator row, as offsets from its first column, come in
// runs of kRun adjacent columns every kPeriod columns, in increasing order (mma.sync and wgmma: pairs
// every 8; tests/cuda/test_sm90_forward.cu checks the wgmma layouts). So the number of a thread's
// columns below a key limit is closed-form, and the columns a row sees, [lo, hi), are the thread's
// column indices [count_below(lo), count_below(hi)): one bit mask per row, one bit test per element
// (FA4's R2P form of the causal mask) instead of two compares per element.
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace ccattn::gpu {

template <int kRun, int kPeriod>
struct ColumnRuns {
    static_assert(0 < kRun && kRun <= kPeriod);
    static constexpr int run = kRun, period = kPeriod;

    // Offset from the thread's first column of its column index i.
    CCATTN_HD static constexpr int offset(int i) { return i / kRun * kPeriod + i % kRun; }

    // How many of the offsets k kPeriod + r (k >= 0, 0 <= r < kRun) lie below t. Moving t by whole
    // periods moves the count by whole runs (clamped at 0): count_below(t - p kPeriod) =
    // max(count_below(t) - p kRun, 0) for p >= 0, so a row's counts at key 0 serve every kv tile.
    CCATTN_HD static int count_below(int t) {
        if (t <= 0) return 0;
        const int rest = t % kPeriod;
        return t / kPeriod * kRun + (rest < kRun ? rest : kRun);
    }
};

// Bits [0, n) set, n clamped to [0, 32].
CCATTN_HD std::uint32_t low_bits(int n) { return n <= 0 ? 0u : n >= 32 ? ~0u : (1u << n) - 1u; }

// Bit i set iff column index base + i lies in [first, last).
CCATTN_HD std::uint32_t column_bits(int first, int last, int base) {
    return low_bits(last - base) & ~low_bits(first - base);
}

}  // namespace ccattn::gpu
