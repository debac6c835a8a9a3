// In-register masking of a score tile held as MMA accumulators, shared by both GPU kernel families
// (mma.sync fragments in src/sm80, wgmma fragments in src/sm90). `s` and `coord` are (rows, cols)
// views (rowcol in sm80/fragment.h, rowcol_view in sm90/fragment.h) of the scores and of their tile coordinates (row, col), so
// get<1>(coord(r, c)) is the key offset of s(r, c) inside the kv tile.
#pragma once

#include <cstdint>

#include <cute/tensor.hpp>

#include "core/band.h"
#include "gpu/column_runs.h"

namespace ccattn::gpu {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor

// Row r sees keys [lo[r], hi[r]) (sequence-local, computed once per q-tile from core::SequenceBand:
// the built-in band or band tensors); the tile starts at key n0.
// Per element: two integer compares against per-row limits shifted into the tile.
template <int kRows, class Scores, class Coords>
__device__ __forceinline__ void mask_band(Scores& s, const Coords& coord, const int (&lo)[kRows],
                                          const int (&hi)[kRows], int n0) {
    static_assert(decltype(size<0>(s))::value == kRows);
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
        const int lo_r = lo[r] - n0, hi_r = hi[r] - n0;
        CUTE_UNROLL
        for (int c = 0; c < size<1>(s); ++c) {
            const int col = get<1>(coord(r, c));
            if (col < lo_r || col >= hi_r) s(r, c) = -INFINITY;
        }
    }
}

// Row r keeps this thread's column indices [first[r], last[r]) (gpu/column_runs.h counts them from
// key limits); per row and 32 columns one bit mask, per element one bit test.
template <int kRows, class Scores>
__device__ __forceinline__ void mask_columns(Scores& s, const int (&first)[kRows], const int (&last)[kRows]) {
    static_assert(decltype(size<0>(s))::value == kRows);
    constexpr int kCols = decltype(size<1>(s))::value;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
        CUTE_UNROLL
        for (int base = 0; base < kCols; base += 32) {
            const std::uint32_t bits = column_bits(first[r], last[r], base);
            CUTE_UNROLL
            for (int c = base; c < base + 32 && c < kCols; ++c)
                if (!(bits & (1u << (c - base)))) s(r, c) = -INFINITY;
        }
    }
}

// The band of one sequence as a per-element predicate, the way a user's mask_mod would state it:
// key j is visible to query i iff 0 <= j < Sk, j * cf <= i + delta (causal) and
// i + delta < (j + window + 1) * cf (window). For 0 <= j this equals core::visible(band, i, j)
// (j <= floor(y / cf) <=> j * cf <= y; floor(y / cf) - w <= j <=> y < (j + w + 1) * cf) without a
// division. Products stay below 2^63 for cf, window < 2^31 and |delta| < 2^62 (checked on the host).
struct ElementBand {
    std::int64_t seqlen_k = 0, compress_factor = 1, diag_offset = 0, window_left = core::kNoWindow;
    bool causal = false;

    __host__ __device__ explicit ElementBand(const core::CompressedBand& b)
        : seqlen_k(b.seqlen_k), compress_factor(b.compress_factor), diag_offset(b.diag_offset),
          window_left(b.window_left), causal(b.causal) {}

    __host__ __device__ __forceinline__ bool operator()(std::int64_t i, std::int64_t j) const {
        const std::int64_t y = i + diag_offset;
        bool v = 0 <= j && j < seqlen_k;
        if (causal) v = v && j * compress_factor <= y;
        if (window_left != core::kNoWindow) v = v && y < (j + window_left + 1) * compress_factor;
        return v;
    }
};

// visible(r, col) decides each element: the per-element predicate path (mask_mod, block-sparse
// partial tiles), with no per-row precomputation.
template <class Scores, class Coords, class Visible>
__device__ __forceinline__ void mask_elements(Scores& s, const Coords& coord, Visible&& visible) {
    CUTE_UNROLL
    for (int r = 0; r < size<0>(s); ++r) {
        CUTE_UNROLL
        for (int c = 0; c < size<1>(s); ++c)
            if (!visible(r, get<1>(coord(r, c)))) s(r, c) = -INFINITY;
    }
}

}  // namespace ccattn::gpu
