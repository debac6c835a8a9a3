// ccattn public API: the three ways to say which (query, key) pairs are visible.
// Exact meaning: shared/SEMANTICS.md (docs/semantics.md in this repository).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "ccattn/tensor.h"

namespace ccattn {

// Host-callable per-element predicate: is key j visible to query i of batch b, query head h?
// Positions are local to the sequence. (GPU backends take a device functor instead; see
// ccattn/cuda.h.)
using MaskModFn = std::function<bool(int b, int h, std::int64_t i, std::int64_t j)>;

// A user-defined monotone band: lo(b, i) and hi(b, i) must be non-decreasing in i.
// Row i of sequence b sees keys [lo, hi), clamped to [0, Sk) by the library.
struct CustomBand {
    std::function<std::int64_t(int b, std::int64_t i)> lo;
    std::function<std::int64_t(int b, std::int64_t i)> hi;
};

// Per (b, h, q-tile) lists of kv tiles: "full" tiles need no masking, "partial" ones apply
// mask_mod per element, all other tiles are skipped. Tiles cover query positions of one head
// (no GQA packing). The head dimension of the lists is Hq, or 1 to share one list across heads.
struct BlockSparseMask {
    std::int64_t tile_m = 0;  // query positions per q-tile
    std::int64_t tile_n = 0;  // keys per kv-tile
    Tensor full_count;        // int32 [B, Hq|1, num_q_tiles]
    Tensor full_index;        // int32 [B, Hq|1, num_q_tiles, max_full]
    Tensor partial_count;     // int32 [B, Hq|1, num_q_tiles]
    Tensor partial_index;     // int32 [B, Hq|1, num_q_tiles, max_partial]
    MaskModFn mask_mod;       // host predicate for partial tiles (CPU backend; CUDA: see Mask::mask_mod)
    // Host lists are always checked (counts, kv tiles in range, no kv tile twice for one q-tile, in
    // either list). Device lists are not: a tile listed twice is counted twice. With this set, device
    // lists are copied to the host and checked the same way first (a synchronizing copy: for debugging).
    bool check_device_lists = false;
};

// A user-defined monotone band as two integer tensors (docs/band_tensors.md): row i of sequence b
// sees keys [lo[b, i], hi[b, i]), clamped to [0, Sk); lo and hi non-decreasing in i within a
// sequence. int32 or int64, each [B, Sq], or [Tq] with varlen (indexed by the query row), on q's
// device. Any value is allowed (clamped); lo >= hi is an empty row. Monotonicity of the clamped values
// is checked unless validate is false (callers that guarantee it).
struct BandTensors {
    Tensor lo;
    Tensor hi;
    bool validate = true;
};

enum class MaskKind { band, mask_mod, block_sparse, custom_band, band_tensors };

struct Mask {
    MaskKind kind = MaskKind::band;

    // The native band (kind == band): kv j visible to query i iff
    //   lo(i) <= j < hi(i),  hi(i) = floor((i + delta) / cf) + 1 (causal),
    //   lo(i) = floor((i + delta) / cf) - window_left (when window_left is set).
    bool causal = false;
    std::int64_t compress_factor = 1;
    std::optional<std::int64_t> diag_offset;  // default: Sk - Sq when cf == 1, else 0
    std::optional<std::int64_t> window_left;  // unset: unlimited

    // kind == mask_mod: the CPU backend calls this host predicate per element. Through this runtime
    // API the CUDA backend has no host callable to call: it evaluates the band fields above per
    // element instead, with no tile skipping (the benchmark's mask_mod path).
    MaskModFn mask_mod;
    BlockSparseMask block_sparse;  // kind == block_sparse
    CustomBand custom_band;       // kind == custom_band
    BandTensors tensor_band;      // kind == band_tensors

    static Mask none() { return {}; }
    static Mask band(bool causal, std::int64_t cf = 1, std::optional<std::int64_t> delta = {},
                     std::optional<std::int64_t> window = {}) {
        Mask m;
        m.causal = causal;
        m.compress_factor = cf;
        m.diag_offset = delta;
        m.window_left = window;
        return m;
    }
    static Mask band_tensors(Tensor lo, Tensor hi, bool validate = true) {
        Mask m;
        m.kind = MaskKind::band_tensors;
        m.tensor_band = {lo, hi, validate};
        return m;
    }
};

}  // namespace ccattn
