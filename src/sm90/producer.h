// The producer of the Hopper forward: one thread issues the TMA loads of K and V tiles into the
// two kStages-deep pipelines, in the order the consumers use them: K of step 0, then for each
// later step K of that step and V of the one before, then V of the last step (QKᵀ of step s runs
// before PV of step s - 1 in the consumers, see consumer.h).
#pragma once

#include <cute/tensor.hpp>

#include "sm90/kernel_params.h"
#include "sm90/work_tile.h"

namespace ccattn::sm90 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor (the public view type)

template <class Traits>
struct Producer {
    using Pipeline = typename Traits::Pipeline;
    using PipelineState = typename Traits::PipelineState;
    static constexpr int kBlockM = Traits::kBlockM;
    static constexpr int kBlockN = Traits::kBlockN;

    // Loads every kv tile of one work tile; the states carry over to the next work tile.
    CUTE_DEVICE static void load(const KernelParams<Traits>& params, const WorkInfo<kBlockM, kBlockN>& info,
                                 WorkTile work, typename Traits::SharedStorage& smem, Pipeline& pipeline_k,
                                 Pipeline& pipeline_v, PipelineState& write_k, PipelineState& write_v) {
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

        auto load_k = [&](int n) {
            pipeline_k.producer_acquire(write_k);
            copy(params.tma_k.with(*pipeline_k.producer_get_barrier(write_k)), tKgK(_, n), tKsK(_, write_k.index()));
            ++write_k;
        };
        auto load_v = [&](int n) {
            pipeline_v.producer_acquire(write_v);
            copy(params.tma_v.with(*pipeline_v.producer_get_barrier(write_v)), tVgV(_, n), tVsV(_, write_v.index()));
            ++write_v;
        };

        int previous = info.step(0).n;
        load_k(previous);
        for (int s = 1; s < info.num_steps; ++s) {
            const int n = info.step(s).n;
            load_k(n);
            load_v(previous);
            previous = n;
        }
        load_v(previous);
    }
};

}  // namespace ccattn::sm90
