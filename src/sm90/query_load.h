// Gathers one consumer warp group's 64 packed Q rows into its swizzled shared-memory slice where
// the producer cannot load them by TMA (KernelParams::q_by_tma: a group that does not divide 64,
// strides TMA cannot take): the warp group loads them itself with 16-byte cp.async, each row's
// address computed from its query position and head; rows past the sequence are zero-filled.
#pragma once

#include <cstdint>

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>

#include "core/params.h"
#include "sm90/named_barriers.h"
#include "sm90/slice_rows.h"

namespace ccattn::sm90 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor (the public view type)

// sQ: (64, Dqk) slice of this warp group; slice_row0: its first packed row within the tile.
template <class Element, class Info, class SmemTensor>
CUTE_DEVICE void load_query(const core::AttnParams& p, const Info& info, int batch, int slice_row0,
                            SmemTensor& sQ, int thread_in_group, int wg) {
    using Rows = SliceRows<decltype(size<0>(sQ))::value, decltype(size<1>(sQ))::value / 8>;  // 16-byte chunks
    const Element* q = static_cast<const Element*>(p.q);
    const std::int64_t valid_rows = info.seq.seqlen_q * info.pack - info.row_begin - slice_row0;
    warp_group_sync(wg);  // every warp's wgmma of the previous tile has read the slice
    Rows::for_each_row(info, slice_row0, thread_in_group, [&](int r, std::int64_t query, int head) {
        const bool valid = r < valid_rows;
        const Element* row = valid ? q + core::offset(p.q_strides, batch, info.seq.row_q, query, head) : q;
        CUTE_UNROLL
        for (int j = 0; j < Rows::kChunksPerThread; ++j) {
            const int chunk = Rows::chunk(thread_in_group, j);
            SM80_CP_ASYNC_CACHEGLOBAL_ZFILL<uint128_t>::copy(*reinterpret_cast<const uint128_t*>(row + (valid ? chunk * 8 : 0)),
                                                             *reinterpret_cast<uint128_t*>(&sQ(r, chunk * 8)), valid);
        }
    });
    cp_async_fence();
    cp_async_wait<0>();
    // Written through the generic proxy, read next by wgmma through the async proxy.
    cutlass::arch::fence_view_async_shared();
    warp_group_sync(wg);
}

}  // namespace ccattn::sm90
