// In-register masking of one warp group's S tile (64 packed rows x kBlockN keys). Per thread:
// its rows' key limits are computed once per work tile; per kv tile each score outside
// [lo, hi) becomes -inf. Columns are compared as thread 0's compile-time column indices against
// limits shifted by this thread's first column (the accumulator layout is affine in the thread;
// tests/cuda/test_sm90_forward.cu checks it), so the compare chain needs no index arithmetic.
#pragma once

#include <cstdint>

#include <cute/tensor.hpp>

#include "core/band.h"
#include "core/band_source.h"
#include "gpu/register_mask.h"
#include "sm90/fragment.h"
#include "sm90/work_tile.h"

namespace ccattn::sm90 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor (the public view type)

template <class TiledMma, int kRowsPerWarpGroup, int kBlockN>
struct RegisterMask {
    using TileShape = Shape<Int<kRowsPerWarpGroup>, Int<kBlockN>>;
    using CoordLayout = decltype(rowcol_layout(
        TiledMma{}.get_thread_slice(0).partition_C(make_identity_tensor(TileShape{})).layout()));
    static constexpr int kRows = decltype(size<0>(CoordLayout{}))::value;

    CUTE_DEVICE static auto coords(int thread_in_group) {
        return rowcol_view(TiledMma{}.get_thread_slice(thread_in_group).partition_C(make_identity_tensor(TileShape{})));
    }

    // Key limits [lo, hi) of this thread's rows (in [0, Sk], so 32-bit), minus its first column.
    int band_lo[kRows], band_hi[kRows];

    // This thread's (row, column) of accumulator element (m, n), rows within the warp group's 64.
    CUTE_DEVICE static int row_of(int thread_in_group, int m) { return get<0>(coords(thread_in_group)(m, 0)); }
    CUTE_DEVICE static int first_col(int thread_in_group) { return get<1>(coords(thread_in_group)(0, 0)); }

    // The limits of this thread's rows for a work tile whose warp-group slice starts at packed row
    // `slice_row0` of the tile, under the band of its sequence (core::sequence_band).
    template <class Info>
    CUTE_DEVICE void set_rows(const core::SequenceBand& band, const Info& info, int slice_row0, int thread_in_group) {
        const int col0 = first_col(thread_in_group);
        CUTE_UNROLL
        for (int m = 0; m < kRows; ++m) {
            const int r = slice_row0 + row_of(thread_in_group, m);
            // Rows past the sequence see nothing (band tensors have no entry for them).
            const core::RowLimits l = info.holds_row(r) ? band.limits(info.query_of(r)) : core::RowLimits{};
            band_lo[m] = int(l.lo) - col0;
            band_hi[m] = int(l.hi) - col0;
        }
    }

    // Whether row m sees any of keys [n0, n1) under the band (n1 at most Sk).
    CUTE_DEVICE bool sees_keys(int m, int n0, int n1, int thread_in_group) const {
        const int col0 = first_col(thread_in_group);
        return max(band_lo[m] + col0, n0) < min(band_hi[m] + col0, n1);
    }

    // Masks the scores of kv tile step.n; Masking::seqlen keeps keys [0, seqlen_k).
    template <class Tensor>
    CUTE_DEVICE void apply(Tensor& s_rowcol, KvStep step, int seqlen_k, int thread_in_group) const {
        CUTE_STATIC_ASSERT_V(size<0>(s_rowcol) == Int<kRows>{});
        const int n0 = step.n * kBlockN;
        const int col0 = first_col(thread_in_group);
        const bool band = step.masking == Masking::band;
        int lo[kRows], hi[kRows];
        CUTE_UNROLL
        for (int m = 0; m < kRows; ++m) {
            lo[m] = band ? band_lo[m] : -col0;
            hi[m] = band ? band_hi[m] : seqlen_k - col0;
        }
        // Thread 0's coordinates of every element: compile-time constants.
        auto coords0 = coords(0);
        gpu::mask_band(s_rowcol, coords0, lo, hi, n0);
    }
};

}  // namespace ccattn::sm90
