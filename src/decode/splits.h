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

// One full wave of resident CTAs: enough loads in flight to saturate memory. Fewer splits when a
// split would get fewer than kMinTilesPerSplit key tiles, or when the fp32 partials (written, then
// read back by the combine) would not stay in half the L2.
inline int choose_splits(const SplitProblem& w) {
    const std::int64_t slots = std::int64_t(w.sms) * w.ctas_per_sm;
    if (w.ctas <= 0 || w.ctas * 5 >= slots * 4) return 1;  // >= 80% of a wave already
    std::int64_t splits = (slots + w.ctas - 1) / w.ctas;
    const std::int64_t by_tiles = w.kv_tiles / kMinTilesPerSplit;
    if (splits > by_tiles) splits = by_tiles;
    const std::int64_t partial_bytes = w.rows * (std::int64_t(w.dim_v) + 1) * 4;
    if (partial_bytes > 0 && splits * partial_bytes > w.l2_bytes / 2) splits = w.l2_bytes / 2 / partial_bytes;
    if (splits > kMaxSplits) splits = kMaxSplits;
    return splits < 1 ? 1 : int(splits);
}

}  // namespace ccattn::decode
