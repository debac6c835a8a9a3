// The epilogue of one consumer warp group: its 64 packed output rows leave from the accumulators,
// each row to its own (query, head) address; lse is written by the first thread of each row's
// quad. Rows past the sequence are never written. Split-KV work tiles write fp32 rows and lse into
// the split's partial results instead (decode/split_work.h), which the combine kernel merges.
#pragma once

#include <cmath>
#include <cstdint>

#include <cute/tensor.hpp>
#include <cutlass/arch/memory.h>

#include "core/params.h"
#include "decode/split_work.h"
#include "sm90/consumer.h"
#include "sm90/slice_rows.h"
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
    // An empty tile's zero rows leave as the Q gather takes rows (query_load.h), 16-byte chunks.
    using Rows = SliceRows<kRows, Traits::kDimV / 8>;
    using Mask = typename Consumer<Traits>::Mask;
    static constexpr int kFragRows = Mask::kRows;

    // Rows of this warp group's slice that lie inside the sequence.
    CUTE_DEVICE static std::int64_t valid_rows(const WorkInfo<kBlockM, kBlockN>& info, int slice_row0) {
        return info.seq.seqlen_q * info.pack - info.row_begin - slice_row0;
    }

    // Writes this thread's chunks of the slice's rows inside the sequence: chunk c of row r gets
    // value(r, c) (16 bytes).
    template <class Value>
    CUTE_DEVICE static void store_rows(const core::AttnParams& p, const WorkInfo<kBlockM, kBlockN>& info, int batch,
                                       int slice_row0, int thread_in_group, Value&& value) {
        const std::int64_t rows = valid_rows(info, slice_row0);
        Rows::for_each_row(info, slice_row0, thread_in_group, [&](int r, std::int64_t query, int head) {
            if (r >= rows) return;
            Element* row = static_cast<Element*>(p.out) + core::offset(p.out_strides, batch, info.seq.row_q, query, head);
            CUTE_UNROLL
            for (int j = 0; j < Rows::kChunksPerThread; ++j) {
                const int chunk = Rows::chunk(thread_in_group, j);
                *reinterpret_cast<uint4*>(row + chunk * 8) = value(r, chunk);
            }
        });
    }

    CUTE_DEVICE static float* lse_address(const core::AttnParams& p, const WorkInfo<kBlockM, kBlockN>& info,
                                          int batch, int tile_row) {
        return p.lse + core::lse_offset(p, batch, info.seq.row_q, info.query_of(tile_row), info.head_of(tile_row));
    }

    // The partial-result index (decode::SplitWork::index) of tile row `tile_row`.
    CUTE_DEVICE static std::int64_t partial_row(const core::AttnParams& p, const decode::SplitWork& w,
                                                const WorkInfo<kBlockM, kBlockN>& info, WorkTile work, int tile_row) {
        return w.index(p, work.split, info.head_of(tile_row),
                       decode::global_row(p, work.batch, info.seq, info.query_of(tile_row)));
    }

    // The slice's rows inside the sequence straight from the accumulators, 16 bytes per store: thread
    // q of a quad holds columns 8k + 2q, 8k + 2q + 1 of its row (wgmma's accumulator layout,
    // tests/cuda/test_sm90_forward.cu checks it); a 4 x 4 transpose of those column pairs within the
    // quad gives it columns 32b + 8q .. 32b + 8q + 7 instead, so each store of a quad fills two whole
    // 32-byte sectors of the row (the pairs as they lie half-filled four). Shared memory stays Q's
    // alone, so the producer can load the next tile's Q during this tile's last P V and this store.
    template <class FragO>
    CUTE_DEVICE static void store(const core::AttnParams& p, const WorkInfo<kBlockM, kBlockN>& info, int batch,
                                  int wg, int thread_in_group, FragO const& tOrO, const float (&lse)[kFragRows]) {
        const int slice_row0 = wg * kRows;
        const std::int64_t rows = valid_rows(info, slice_row0);
        const int q = thread_in_group % 4;
        auto o = rowcol_view(tOrO);  // (kFragRows, cols): column pairs adjacent
        static_assert(decltype(size<1>(o))::value % 8 == 0, "whole 32-column blocks per row");
        auto coord = rowcol_view(typename Traits::TiledMmaPV{}.get_thread_slice(thread_in_group).partition_C(
            make_identity_tensor(Shape<Int<kRows>, Int<Traits::kDimV>>{})));
        CUTE_UNROLL
        for (int m = 0; m < kFragRows; ++m) {
            const int r = get<0>(coord(m, 0));
            const int tile_row = slice_row0 + r;
            Element* dst = static_cast<Element*>(p.out) + core::offset(p.out_strides, batch, info.seq.row_q,
                                                                       info.query_of(tile_row), info.head_of(tile_row));
            CUTE_UNROLL
            for (int b = 0; b < size<1>(o) / 8; ++b) {
                std::uint32_t pairs[4];  // columns 32b + 8j + 2q, + 1
                CUTE_UNROLL
                for (int j = 0; j < 4; ++j) {
                    cutlass::Array<Element, 2> pair;
                    pair[0] = Element(o(m, 8 * b + 2 * j));
                    pair[1] = Element(o(m, 8 * b + 2 * j + 1));
                    pairs[j] = reinterpret_cast<const std::uint32_t&>(pair);
                }
                transpose_quad(pairs, q);  // every lane: the shuffles span the warp
                // One 16-byte store (st.global.v4): left to itself the compiler split some into four.
                cutlass::arch::global_store<uint4, sizeof(uint4)>(make_uint4(pairs[0], pairs[1], pairs[2], pairs[3]),
                                                                 dst + 32 * b + 8 * q, r < rows);
            }
            if (r < rows && p.lse != nullptr && q == 0) *lse_address(p, info, batch, tile_row) = lse[m];
        }
    }

    // Split-KV: row r of the slice, normalized within the split, to its partial row of `split`.
    template <class FragO>
    CUTE_DEVICE static void store_split(const core::AttnParams& p, const decode::SplitWork& w,
                                        const WorkInfo<kBlockM, kBlockN>& info, WorkTile work, int wg, int thread_in_group,
                                        FragO const& tOrO, const float (&lse)[kFragRows]) {
        const int slice_row0 = wg * kRows;
        const std::int64_t rows = valid_rows(info, slice_row0);
        auto o = rowcol_view(tOrO);  // (kFragRows, cols): column pairs adjacent
        auto coord = rowcol_view(typename Traits::TiledMmaPV{}.get_thread_slice(thread_in_group).partition_C(
            make_identity_tensor(Shape<Int<kRows>, Int<Traits::kDimV>>{})));
        CUTE_UNROLL
        for (int m = 0; m < kFragRows; ++m) {
            const int r = get<0>(coord(m, 0));
            if (r >= rows) continue;
            const std::int64_t at = partial_row(p, w, info, work, slice_row0 + r);
            float* dst = w.o_partial + at * Traits::kDimV;
            CUTE_UNROLL
            for (int n = 0; n < size<1>(o); n += 2)
                *reinterpret_cast<float2*>(dst + get<1>(coord(m, n))) = make_float2(o(m, n), o(m, n + 1));
            if (get<1>(coord(0, 0)) == 0) w.lse_partial[at] = lse[m];
        }
    }

    // Split-KV: a split that saw no key of the slice's rows (lse -inf: the combine gives it no weight).
    CUTE_DEVICE static void store_split_empty(const core::AttnParams& p, const decode::SplitWork& w,
                                              const WorkInfo<kBlockM, kBlockN>& info, WorkTile work, int wg,
                                              int thread_in_group) {
        const int slice_row0 = wg * kRows;
        const std::int64_t rows = valid_rows(info, slice_row0);
        constexpr int kVectors = Traits::kDimV / 4;
        for (int c = thread_in_group; c < kRows * kVectors; c += 128) {
            const int r = c / kVectors;
            if (r >= rows) break;
            const std::int64_t at = partial_row(p, w, info, work, slice_row0 + r);
            reinterpret_cast<float4*>(w.o_partial + at * Traits::kDimV)[c % kVectors] = make_float4(0.f, 0.f, 0.f, 0.f);
            if (c % kVectors == 0) w.lse_partial[at] = -INFINITY;
        }
    }

    // A work tile with no visible key: out = 0, lse = -inf for every row of the slice.
    CUTE_DEVICE static void store_empty(const core::AttnParams& p, const WorkInfo<kBlockM, kBlockN>& info, int batch,
                                        int wg, int thread_in_group) {
        const int slice_row0 = wg * kRows;
        store_rows(p, info, batch, slice_row0, thread_in_group, [](int, int) { return make_uint4(0, 0, 0, 0); });
        const std::int64_t rows = valid_rows(info, slice_row0);
        if (p.lse != nullptr && thread_in_group < kRows && thread_in_group < rows)
            *lse_address(p, info, batch, slice_row0 + thread_in_group) = -INFINITY;
    }

  private:
    // v[j] of quad thread t is element (t, j) of a 4 x 4 matrix; afterwards v[j] holds element (j, t):
    // two butterfly steps, each swapping one off-diagonal half with the partner lane.
    CUTE_DEVICE static void transpose_quad(std::uint32_t (&v)[4], int q) {
        const bool high = q & 2;  // lanes 2, 3 trade their columns 0, 1 for lanes 0, 1's columns 2, 3
        std::uint32_t a = __shfl_xor_sync(0xffffffffu, high ? v[0] : v[2], 2);
        std::uint32_t b = __shfl_xor_sync(0xffffffffu, high ? v[1] : v[3], 2);
        if (high) v[0] = a, v[1] = b;
        else v[2] = a, v[3] = b;
        const bool odd = q & 1;  // then within each pair of lanes, columns 0, 2 against 1, 3
        a = __shfl_xor_sync(0xffffffffu, odd ? v[0] : v[1], 1);
        b = __shfl_xor_sync(0xffffffffu, odd ? v[2] : v[3], 1);
        if (odd) v[0] = a, v[2] = b;
        else v[1] = a, v[3] = b;
    }
};

}  // namespace ccattn::sm90
