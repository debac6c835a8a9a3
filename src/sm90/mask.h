// In-register masking of one warp group's S tile (64 packed rows x kBlockN keys). Per thread:
// its rows' key limits are computed once per work tile; per kv tile each score outside
// [lo, hi) becomes -inf. The limits are shifted by this thread's first column (the accumulator
// layout is affine in the thread), and a thread's columns are pairs every 8 (gpu/column_runs.h;
// tests/cuda/test_sm90_forward.cu checks both), so a row's visible columns are one bit mask.
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
    using Runs = gpu::ColumnRuns<2, 8>;  // a thread's columns of a wgmma accumulator row

    CUTE_DEVICE static auto coords(int thread_in_group) {
        return rowcol_view(TiledMma{}.get_thread_slice(thread_in_group).partition_C(make_identity_tensor(TileShape{})));
    }

    // Key limits [lo, hi) of this thread's rows (in [0, Sk], so 32-bit), minus its first column, and
    // the thread's column indices below each in a tile at key 0.
    int band_lo[kRows], band_hi[kRows];
    int band_first[kRows], band_last[kRows];
    static_assert(kBlockN % Runs::period == 0, "kv tiles start at whole periods");
    static constexpr int kColumns = kBlockN / Runs::period * Runs::run;  // a thread's of one row

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
            band_first[m] = Runs::count_below(band_lo[m]);
            band_last[m] = Runs::count_below(band_hi[m]);
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
        // Tile n's column indices are those at key 0 less n kColumns (column_runs.h).
        const int shift = step.n * kColumns;
        const int keys = Runs::count_below(seqlen_k - first_col(thread_in_group)) - shift;
        const bool band = step.masking == Masking::band;
        int first[kRows], last[kRows];
        CUTE_UNROLL
        for (int m = 0; m < kRows; ++m) {
            first[m] = band ? band_first[m] - shift : 0;
            last[m] = band ? band_last[m] - shift : keys;
        }
        gpu::mask_columns(s_rowcol, first, last);
    }
};

}  // namespace ccattn::sm90
