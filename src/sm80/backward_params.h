// What the backward's kernels read besides core::AttnParams: the fp32 workspaces and the block-sparse
// bit lists, and the launcher each instantiation file provides. No CuTe here: backward.cu includes it.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "ccattn/tensor.h"
#include "core/host_device.h"
#include "core/params.h"

namespace ccattn::sm80 {

// Block-sparse lists transposed for the backward, as bit sets: for each (b, query head, sparse kv-tile)
// a row of `words` 64-bit words whose bit t says that sparse q-tile t visits the kv-tile ("visit": full
// or partial) and that it is full ("full"). Rows are indexed ((b * Hq + h) * kv_tiles + kt) * words.
// A kernel kv-tile overlaps at most 32 sparse kv-tiles (any sparse tile_n; checked on the host); a
// sparse q-tile holds q_subtiles whole kernel q-tiles.
struct SparseBits {
    const unsigned long long* visit = nullptr;  // the type atomicOr takes
    const unsigned long long* full = nullptr;
    std::int64_t kv_tiles = 0;  // sparse kv-tiles (of tile_n keys)
    std::int64_t words = 0;     // 64-bit words per row: ceil(sparse q-tiles / 64)
    std::int64_t tile_n = 1;    // keys per sparse kv-tile
    int q_subtiles = 1;         // kernel q-tiles per sparse q-tile: sparse_tile_m / kernel q_tile
};

// Compressed keys leave few kv-tiles (128K -> 2K keys: 16 per KV head), too few CTAs for the GPU, so
// the q range is cut into chunks: chunk c holds q-tiles [c * length, (c + 1) * length) (for block-sparse
// lists, sparse q-tiles, of every query head of the group), and CTA (kv-tile, chunk) visits the part of
// its range inside it. Chunks sit at the same q-tiles for every kv-tile, so the CTAs running together
// read the same Q and dO rows from L2. With more than one chunk, dK and dV are sums over CTAs: added
// into fp32 accumulators (dK already scaled), which a conversion kernel writes out.
struct QChunks {
    int count = 1;
    std::int64_t length = std::int64_t(1) << 62;  // in (sparse) q-tiles
};

// Deterministic mode (p.deterministic): int32 counters, zeroed by the driver, through which the CTAs
// that add into one fp32 accumulator take turns in a fixed order (gpu/turns.h). The CTAs visiting a
// q-tile add its dQ from the last kv tile down (QTile::rank); the chunks of a kv tile add its dK, dV
// in chunk order. A CTA's `groups` thread groups add disjoint parts (sm90's two consumer warp groups:
// dQ column halves, dK / dV key halves) and take their turns independently. Null otherwise.
//
// No CTA waits on one launched after it (blocks start in the order of their linear index), so the
// waits cannot deadlock even when the grid does not fit on the GPU at once: grid x is chunk-major
// (earlier chunks first), and within a chunk deterministic mode launches kv tiles from the last
// (kv_tile_of), so a q-tile's earlier adders and a kv tile's earlier chunks have lower block indices
// with the same y (and z).
struct AddOrder {
    int* dq = nullptr;   // [batch, Hkv, q_tiles, groups]: CTAs done with the q-tile's dQ
    int* dkv = nullptr;  // [batch, Hkv, kv_tiles, groups]: chunks done with the kv tile's dK, dV
    std::int64_t q_tiles = 0, kv_tiles = 0;  // per (batch, KV head), of the longest sequence
    int heads_kv = 0, groups = 1;

    CCATTN_HD int* dq_turn(int b, int kv_head, std::int64_t m_block, int group) const {
        return dq + ((std::int64_t(b) * heads_kv + kv_head) * q_tiles + m_block) * groups + group;
    }
    CCATTN_HD int* dkv_turn(int b, int kv_head, std::int64_t n_block, int group) const {
        return dkv + ((std::int64_t(b) * heads_kv + kv_head) * kv_tiles + n_block) * groups + group;
    }

    // The kv tile that grid column `column` (blockIdx.x within its chunk) runs, of `tiles`; its own
    // inverse.
    CCATTN_HD static std::int64_t kv_tile_of(std::int64_t column, std::int64_t tiles, bool ordered) {
        return ordered ? tiles - 1 - column : column;
    }
};

// Q-tiles whose dQ one CTA alone produces (sole_dq_tile, backward_schedule.h) bypass the fp32 dQ
// accumulator: that CTA stores dQ in the output dtype, the preprocess leaves their accumulator rows
// alone and the conversion skips them. The driver turns it on for the built-in band without
// deterministic mode where the keys fit two kv tiles (most q-tiles direct; measured faster there and
// not beyond, bench/NOTES.md v17); the tile sizes are the main kernel's. A small kernel classifies every
// q-tile once (tiles), and the main kernel, the preprocess and the conversion all read that one
// classification.
struct DirectDq {
    bool on = false;
    int q_tile = 64, kv_tile = 128;
    const std::uint8_t* tiles = nullptr;   // [batch, tiles_per_sequence]: q-tile m of sequence b is direct
    std::int64_t tiles_per_sequence = 0;   // q-tiles of the longest sequence
};

struct BackwardParams {
    core::AttnParams p;
    float* dq_accum = nullptr;  // fp32 [total_q, Hq, Dqk], dense; zeroed by the preprocess kernel (but
                                // the rows of direct q-tiles: DirectDq)
    DirectDq direct;
    float* dsum = nullptr;      // fp32 [total_q, Hq]: D = rowsum(dO * O)
    SparseBits sparse;          // block-sparse masks only
    QChunks chunks;
    float* dk_accum = nullptr;  // fp32 [total_k, Hkv, Dqk], dense, zeroed: when chunks.count > 1
    float* dv_accum = nullptr;  // fp32 [total_k, Hkv, Dv]
    AddOrder order;             // deterministic mode only
};

// Runs the main kernel (dK, dV written; dQ accumulated into dq_accum) for one head-dim pair and dtype.
// Defined in backward_kernel.h, instantiated once per file in instantiations/.
template <int kDqk, int kDv, DType kDType>
cudaError_t launch_backward(const BackwardParams& params, cudaStream_t stream);

// A main kernel family (sm80's, or the Hopper kernel in src/sm90) behind the shared host driver:
// it reads the workspaces and schedule of BackwardParams, laid out for its tiles (BackwardKernel).
using BackwardMain = cudaError_t (*)(const BackwardParams& params, cudaStream_t stream);

}  // namespace ccattn::sm80
