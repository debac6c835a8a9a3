// The epilogue of one consumer warp group: its 64 packed output rows go through its shared-memory
// slice (stmatrix, swizzled) and leave as 16-byte stores, one row at a time to its own (query,
// head) address; lse is written by the first thread of each row's quad. Rows past the sequence
// are never written.
#pragma once

#include <cmath>
#include <cstdint>

#include <cute/tensor.hpp>

#include "core/params.h"
#include "sm90/consumer.h"
#include "sm90/named_barriers.h"
#include "sm90/work_tile.h"

namespace ccattn::sm90 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor (the public view type)

template <class Traits>
struct Epilogue {
    using Element = typename Traits::Element;
    static constexpr int kBlockM = Traits::kBlockM;
    static constexpr int kBlockN = Traits::kBlockN;
    static constexpr int kRows = Traits::kRowsPerWarpGroup;
    static constexpr int kChunks = Traits::kDimV / 8;  // 16-byte chunks per output row
    static constexpr int kChunksPerThread = kRows * kChunks / 128;
    static_assert(kRows * kChunks % 128 == 0);
    using Mask = typename Consumer<Traits>::Mask;
    static constexpr int kFragRows = Mask::kRows;

    // Rows of this warp group's slice that lie inside the sequence.
    CUTE_DEVICE static std::int64_t valid_rows(const WorkInfo<kBlockM, kBlockN>& info, int slice_row0) {
        return info.seq.seqlen_q * info.pack - info.row_begin - slice_row0;
    }

    CUTE_DEVICE static Element* row_address(const core::AttnParams& p, const WorkInfo<kBlockM, kBlockN>& info,
                                            int batch, int tile_row) {
        return static_cast<Element*>(p.out) +
               core::offset(p.out_strides, batch, info.seq.row_q, info.query_of(tile_row), info.head_of(tile_row));
    }

    CUTE_DEVICE static float* lse_address(const core::AttnParams& p, const WorkInfo<kBlockM, kBlockN>& info,
                                          int batch, int tile_row) {
        return p.lse + core::lse_offset(p, batch, info.seq.row_q, info.query_of(tile_row), info.head_of(tile_row));
    }

    template <class FragO>
    CUTE_DEVICE static void store(const core::AttnParams& p, const WorkInfo<kBlockM, kBlockN>& info, int batch,
                                  typename Traits::SharedStorage& smem, int wg, int thread_in_group,
                                  FragO const& tOrO, const float (&lse)[kFragRows]) {
        const int slice_row0 = wg * kRows;
        Tensor sO = make_tensor(make_smem_ptr(smem.q.data() + wg * Traits::kSmemQElements),
                                typename Traits::SmemLayoutO{});  // (64, Dv)
        Tensor rO = make_tensor<Element>(tOrO.layout());         // (MMA, MMA_M, MMA_N)
        convert_fragment(tOrO, rO);
        auto copy_o = make_tiled_copy_C(Copy_Atom<SM90_U32x4_STSM_N, Element>{}, typename Traits::TiledMmaPV{});
        auto thr_copy_o = copy_o.get_thread_slice(thread_in_group);
        copy(copy_o, thr_copy_o.retile_S(rO), thr_copy_o.partition_D(sO));
        warp_group_sync(wg);

        const std::int64_t rows = valid_rows(info, slice_row0);
        CUTE_UNROLL
        for (int k = 0; k < kChunksPerThread; ++k) {
            const int c = k * 128 + thread_in_group;
            const int r = c / kChunks, chunk = c % kChunks;
            if (r < rows) {
                *reinterpret_cast<uint4*>(row_address(p, info, batch, slice_row0 + r) + chunk * 8) =
                    *reinterpret_cast<const uint4*>(&sO(r, chunk * 8));
            }
        }
        if (p.lse != nullptr && Mask::first_col(thread_in_group) == 0) {
            CUTE_UNROLL
            for (int m = 0; m < kFragRows; ++m) {
                const int r = Mask::row_of(thread_in_group, m);
                if (r < rows) *lse_address(p, info, batch, slice_row0 + r) = lse[m];
            }
        }
        warp_group_sync(wg);  // the slice is the next tile's Q buffer
    }

    // A work tile with no visible key: out = 0, lse = -inf for every row of the slice.
    CUTE_DEVICE static void store_empty(const core::AttnParams& p, const WorkInfo<kBlockM, kBlockN>& info, int batch,
                                        int wg, int thread_in_group) {
        const int slice_row0 = wg * kRows;
        const std::int64_t rows = valid_rows(info, slice_row0);
        CUTE_UNROLL
        for (int k = 0; k < kChunksPerThread; ++k) {
            const int c = k * 128 + thread_in_group;
            const int r = c / kChunks, chunk = c % kChunks;
            if (r < rows) *reinterpret_cast<uint4*>(row_address(p, info, batch, slice_row0 + r) + chunk * 8) = make_uint4(0, 0, 0, 0);
        }
        if (p.lse != nullptr && thread_in_group < kRows && thread_in_group < rows)
            *lse_address(p, info, batch, slice_row0 + thread_in_group) = -INFINITY;
    }
};

}  // namespace ccattn::sm90
