// How many CTAs share one sequence's keys in the split-KV decode (flash-decoding): host-only, no CUDA,
// so the CPU tests cover it.
#pragma once

#include <cstdint>

namespace ccattn::decode {

struct SplitProblem {
    std::int64_t ctas = 0;         // CTAs of the unsplit grid: q-tiles x KV heads x batch
    std::int64_t kv_tiles = 0;     // key tiles of the longest sequence
    std::int64_t rows = 0;         // output rows (B x Hq x Sq): each split writes an fp32 partial of each
    int dim_v = 0;
    int sms = 0;                   // streaming multiprocessors
    int ctas_per_sm = 1;           // resident CTAs per SM (shared memory bound)
    std::int64_t l2_bytes = 0;
};

constexpr int kMaxSplits = 128;          // what the heuristic picks at most (a caller may force up to 256)
constexpr std::int64_t kMinTilesPerSplit = 4;  // below, the prologue and the partial writes dominate

// Splits that fill the resident-CTA slots in whole waves: enough loads in flight to saturate memory,
// and no half-empty last wave. Among the split counts allowed (at least kMinTilesPerSplit key tiles
// each; the fp32 partials, written then read back by the combine, within half the L2; at most
// kMaxSplits) the smallest whose wave efficiency (waves / whole waves) is within 5% of the best.
inline int choose_splits(const SplitProblem& w) {
    const std::int64_t slots = std::int64_t(w.sms) * w.ctas_per_sm;
    if (w.ctas <= 0 || w.ctas * 5 >= slots * 4) return 1;  // >= 80% of a wave already
    std::int64_t most = w.kv_tiles / kMinTilesPerSplit;
    const std::int64_t partial_bytes = w.rows * (std::int64_t(w.dim_v) + 1) * 4;
    if (partial_bytes > 0 && most * partial_bytes > w.l2_bytes / 2) most = w.l2_bytes / 2 / partial_bytes;
    if (most > kMaxSplits) most = kMaxSplits;
    if (most <= 1) return 1;
    auto efficiency = [&](std::int64_t s) {
        const std::int64_t ctas = w.ctas * s, waves = (ctas + slots - 1) / slots;
        return double(ctas) / double(waves * slots);
    };
    double best = 0;
    for (std::int64_t s = 1; s <= most; ++s) best = efficiency(s) > best ? efficiency(s) : best;
    for (std::int64_t s = 1; s <= most; ++s)
        if (efficiency(s) >= 0.95 * best) return int(s);
    return 1;
}

}  // namespace ccattn::decode
