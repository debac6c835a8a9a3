// The producer of the Hopper forward: one thread issues the TMA loads of K and V tiles into the
// two kStages-deep pipelines in the order the consumers use them: K of step 0, then for each later
// step K of that step and V of the one before, then V of the last step (QKᵀ of step s runs before PV
// of step s - 1 in the consumers, see consumer.h); and after the first K, each work tile's Q where it
// moves by TMA. A paged cache's tiles are gathered page chunk by page chunk (paged_kv.h).
#pragma once

#include <cstdint>

#include <cute/tensor.hpp>

#include "sm90/kernel_params.h"
#include "sm90/paged_kv.h"
#include "sm90/work_tile.h"

namespace ccattn::sm90 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor (the public view type)

template <class Traits>
struct Producer {
    using Element = typename Traits::Element;
    using Pipeline = typename Traits::Pipeline;
    using PipelineState = typename Traits::PipelineState;
    static constexpr int kBlockM = Traits::kBlockM;
    static constexpr int kBlockN = Traits::kBlockN;

    // Loads every kv tile of one work tile, and its Q slices where they move by TMA; the states carry
    // over to the next work tile (q_phases: bit w, the parity of warp group w's q_empty to wait for).
    CUTE_DEVICE static void load(const KernelParams<Traits>& params, const WorkInfo<kBlockM, kBlockN>& info,
                                 WorkTile work, typename Traits::SharedStorage& smem, Pipeline& pipeline_k,
                                 Pipeline& pipeline_v, PipelineState& write_k, PipelineState& write_v,
                                 std::uint32_t& q_phases) {
        Tensor sK = make_tensor(make_smem_ptr(smem.k.data()), typename Traits::SmemLayoutK{});  // (kBlockN, Dqk, stage)
        Tensor sV = make_tensor(make_smem_ptr(smem.v.data()), typename Traits::SmemLayoutV{});  // (Dv, kBlockN, stage)

        // Varlen tensors have one batch entry and the sequence starts at row row_k.
        const int batch = params.attn.varlen() ? 0 : work.batch;
        const int row0 = int(info.seq.row_k);
        Tensor mK = params.tma_k.get_tma_tensor(params.shape_k)(_, _, info.kv_head, batch);     // (rows, Dqk)
        Tensor mVt = params.tma_v.get_tma_tensor(params.shape_vt)(_, _, info.kv_head, batch);  // (Dv, rows)
        Tensor gK = local_tile(domain_offset(make_coord(row0, _0{}), mK),
                               Shape<Int<kBlockN>, Int<Traits::kDimQK>>{}, make_coord(_, _0{}));  // (kBlockN, Dqk, n)
        Tensor gVt = local_tile(domain_offset(make_coord(_0{}, row0), mVt),
                                Shape<Int<Traits::kDimV>, Int<kBlockN>>{}, make_coord(_0{}, _));  // (Dv, kBlockN, n)
        auto k_views = tma_partition(params.tma_k, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sK), group_modes<0, 2>(gK));
        auto v_views = tma_partition(params.tma_v, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sV), group_modes<0, 2>(gVt));
        Tensor tKgK = get<0>(k_views);  // (TMA, n)
        Tensor tKsK = get<1>(k_views);  // (TMA, stage)
        Tensor tVgV = get<0>(v_views);  // (TMA, n)
        Tensor tVsV = get<1>(v_views);  // (TMA, stage)

        // A paged cache: the pages of the K tile about to load, and of the V tile (the K before it).
        TilePages<kBlockN> pages_k, pages_v;
        // One stage of K or V (kDim columns): through the page table, or one tile of the tensor map.
        auto load = [&](auto dim, Pipeline& pipeline, PipelineState& state, const TilePages<kBlockN>& pages,
                        const CUtensorMap& page_map, Element* buffer, const auto& tma, const auto& src, const auto& dst,
                        int n) {
            constexpr int kDim = decltype(dim)::value;
            pipeline.producer_acquire(state);
            auto* barrier = pipeline.producer_get_barrier(state);
            if (params.paged)
                pages.template load<kDim>(page_map, barrier, buffer + state.index() * kBlockN * kDim, params.attn,
                                          params.page_chunk_rows, n, info.kv_head);
            else
                copy(tma.with(*barrier), src(_, n), dst(_, state.index()));
            ++state;
        };
        auto load_k = [&](int n) {
            if (params.paged) pages_k.look_up(params.attn, params.page_chunk_rows, work.batch, n, info.seqlen_k);
            load(Int<Traits::kDimQK>{}, pipeline_k, write_k, pages_k, params.page_k, smem.k.data(), params.tma_k, tKgK, tKsK, n);
        };
        auto load_v = [&](int n) {
            load(Int<Traits::kDimV>{}, pipeline_v, write_v, pages_v, params.page_v, smem.v.data(), params.tma_v, tVgV, tVsV, n);
        };

        int previous = info.step(0).n;
        load_k(previous);
        // After the first K: that stage frees as soon as an earlier tile's S has read it, Q's slices only
        // once this warp group's last S of the previous work tile has.
        if (params.q_by_tma) load_q(params, info, work, smem, q_phases);
        for (int s = 1; s < info.num_steps; ++s) {
            const int n = info.step(s).n;
            pages_v = pages_k;
            load_k(n);
            load_v(previous);
            previous = n;
        }
        pages_v = pages_k;
        load_v(previous);
    }

    // The Q slice of every consumer warp group with rows in the sequence (the others skip the tile,
    // forward_kernel.h): Dqk / 64 boxes of 64 packed rows, the slice's first row a query of head head0
    // (pack divides 64).
    CUTE_DEVICE static void load_q(const KernelParams<Traits>& params, const WorkInfo<kBlockM, kBlockN>& info,
                                   WorkTile work, typename Traits::SharedStorage& smem, std::uint32_t& q_phases) {
        constexpr int kRows = Traits::kRowsPerWarpGroup;
        constexpr auto kHint = static_cast<std::uint64_t>(TMA::CacheHintSm90::EVICT_FIRST);
        const int batch = params.attn.varlen() ? 0 : work.batch;
        for (int wg = 0; wg < Traits::kConsumerWarpGroups; ++wg) {
            const std::int64_t slice_row0 = info.row_begin + wg * kRows;
            if (slice_row0 >= info.seq.seqlen_q * info.pack) break;
            cutlass::arch::ClusterBarrier::wait(&smem.q_empty[wg], (q_phases >> wg) & 1u);
            q_phases ^= 1u << wg;
            cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&smem.q_full[wg], Traits::kTmaBytesQ);
            const int row = int(info.seq.row_q + info.pack_div.div(std::uint32_t(slice_row0)));
            Element* slice = smem.q.data() + wg * Traits::kSmemQElements;
            CUTE_UNROLL
            for (int c = 0; c < Traits::kDimQK; c += 64)
                SM90_TMA_LOAD_4D::copy(&params.tma_q, &smem.q_full[wg], kHint, slice + c * kRows, c,
                                       info.head0, row, batch);
        }
    }
};

}  // namespace ccattn::sm90
