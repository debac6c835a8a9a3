// The consumer mainloop of the Hopper forward: one warp group, 64 packed query rows, every kv
// step of one work tile. The loop overlaps the two matmuls of neighbouring steps within the warp
// group: step s issues S_s = Q K_sᵀ, rescales O to step s-1's row maxima while that runs, issues
// O += P_{s-1} V_{s-1}, waits for S_s only, and masks and exponentiates it while the PV wgmma runs
// (FA3's order: between the PV's end and the next S only P's conversion is left). With ping-pong the
// consumer warp groups also take turns issuing those two matmuls (named_barriers.h), so that the
// tensor cores work for one group while the other runs its softmax.
#pragma once

#include <cute/tensor.hpp>

#include "sm90/fragment.h"
#include "sm90/kernel_params.h"
#include "sm90/mask.h"
#include "sm90/named_barriers.h"
#include "sm90/softmax.h"
#include "sm90/wgmma.h"
#include "sm90/work_tile.h"

namespace ccattn::sm90 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor (the public view type)

template <class Traits>
struct Consumer {
    using Element = typename Traits::Element;
    using TiledMmaQK = typename Traits::TiledMmaQK;
    using TiledMmaPV = typename Traits::TiledMmaPV;
    using Pipeline = typename Traits::Pipeline;
    using PipelineState = typename Traits::PipelineState;
    static constexpr int kBlockM = Traits::kBlockM;
    static constexpr int kBlockN = Traits::kBlockN;
    static constexpr int kRowsPerWarpGroup = Traits::kRowsPerWarpGroup;
    using Mask = RegisterMask<TiledMmaQK, kRowsPerWarpGroup, kBlockN>;
    static constexpr int kRows = Mask::kRows;  // accumulator rows per thread
    using Softmax = OnlineSoftmax<kRows>;

    // The output accumulator of one warp group: (MMA, MMA_M, MMA_N) over 64 x Dv.
    CUTE_DEVICE static auto make_output_fragment() {
        return partition_fragment_C(TiledMmaPV{}, Shape<Int<kRowsPerWarpGroup>, Int<Traits::kDimV>>{});
    }

    // Runs the info.num_steps (> 0) kv steps of a work tile, calling release_q() once the last S has
    // read Q. On return tOrO holds the normalized output rows and lse their natural-log sums (-inf for
    // empty rows).
    template <class ReleaseQ, class FragO>
    CUTE_DEVICE static void run(const KernelParams<Traits>& params, const WorkInfo<kBlockM, kBlockN>& info,
                                const Mask& mask, typename Traits::SharedStorage& smem, int wg, int thread_in_group,
                                Pipeline& pipeline_k, Pipeline& pipeline_v, PipelineState& read_k,
                                PipelineState& read_v, ReleaseQ&& release_q, FragO& tOrO, float (&lse)[kRows]) {
        TiledMmaQK mma_qk;
        TiledMmaPV mma_pv;
        auto thr_qk = mma_qk.get_thread_slice(thread_in_group);
        auto thr_pv = mma_pv.get_thread_slice(thread_in_group);
        Tensor sQ = make_tensor(make_smem_ptr(smem.q.data() + wg * Traits::kSmemQElements),
                                typename Traits::SmemLayoutQ{});                                   // (64, Dqk)
        Tensor sK = make_tensor(make_smem_ptr(smem.k.data()), typename Traits::SmemLayoutK{});  // (kBlockN, Dqk, stage)
        Tensor sV = make_tensor(make_smem_ptr(smem.v.data()), typename Traits::SmemLayoutV{});  // (Dv, kBlockN, stage)
        Tensor tSrQ = thr_qk.partition_fragment_A(sQ);  // (MMA, MMA_M, MMA_K) descriptors
        Tensor tSrK = thr_qk.partition_fragment_B(sK);  // (MMA, MMA_N, MMA_K, stage) descriptors
        Tensor tOrV = thr_pv.partition_fragment_B(sV);  // (MMA, MMA_N, MMA_K, stage) descriptors
        Tensor tSrS = partition_fragment_C(mma_qk, Shape<Int<kRowsPerWarpGroup>, Int<kBlockN>>{});  // (MMA, MMA_M, MMA_N)
        Tensor tOrP = make_tensor<Element>(a_operand_layout(tSrS.layout()));  // (MMA, MMA_M, MMA_K): S as PV's A
        Tensor s = rowcol_view(tSrS);                                          // (rows, cols)
        CUTE_STATIC_ASSERT_V(size<0>(s) == Int<kRows>{});
        CUTE_STATIC_ASSERT_V(size<2>(tOrP) == size<2>(tOrV));

        Softmax softmax(params.attn.scale_log2);
        float o_scale[kRows];

        auto issue_qk = [&] { wgmma<true>(mma_qk, tSrQ, tSrK(_, _, _, read_k.index()), tSrS); };
        auto issue_pv = [&] { wgmma<false>(mma_pv, tOrP, tOrV(_, _, _, read_v.index()), tOrO); };
        // A stage is only read by this warp group's wgmma, complete once warpgroup_wait returns:
        // one thread releases it for the group.
        const bool releaser = thread_in_group == 0;
        auto release_k = [&] {
            if (releaser) pipeline_k.consumer_release(read_k);
            ++read_k;
        };
        auto release_v = [&] {
            if (releaser) pipeline_v.consumer_release(read_v);
            ++read_v;
        };
        // Rows with a visible key among this work tile's kv tiles (all of the row's keys, unless split):
        // the band's (mask_mod is the band per element); block-sparse rows learn it from the tiles they visit.
        const bool sparse = info.partial != nullptr;
        bool seen[kRows];
        CUTE_UNROLL
        for (int m = 0; m < kRows; ++m)
            seen[m] = !sparse && mask.sees_keys(m, info.key_begin(), info.key_end(), thread_in_group);
        // Masked steps may leave whole rows at -inf, unmasked ones never do.
        auto softmax_step = [&](KvStep step, auto first) {
            constexpr bool kFirst = decltype(first)::value;
            if (sparse) {
                const int n0 = step.n * kBlockN, n1 = min(n0 + kBlockN, info.seqlen_k);
                CUTE_UNROLL
                for (int m = 0; m < kRows; ++m)
                    seen[m] = seen[m] || step.masking != Masking::band || mask.sees_keys(m, n0, n1, thread_in_group);
            }
            if (step.masking != Masking::none) {
                mask.apply(s, step, info.seqlen_k, thread_in_group);
                softmax.template update<kFirst, true>(s, o_scale);
            } else {
                softmax.template update<kFirst, false>(s, o_scale);
            }
        };

        // V of kv tile n has landed: rows past the keys that may hold anything become zeros (P is 0
        // there, but 0 * NaN is not).
        auto wait_v = [&](int n) {
            pipeline_v.consumer_wait(read_v);
            if (params.zero_v_tail && (n + 1) * kBlockN > info.seqlen_k)
                zero_keys_from(sV(_, _, read_v.index()), info.seqlen_k - n * kBlockN, wg, thread_in_group);
        };

        clear(tOrO);
        pipeline_k.consumer_wait(read_k);
        issue_qk();
        warpgroup_wait<0>();
        warpgroup_fence_operand(tSrS);
        release_k();
        if (info.num_steps == 1) release_q();
        KvStep previous = info.step(0);
        softmax_step(previous, cute::true_type{});
        convert_fragment(tSrS, tOrP);

        for (int step = 1; step < info.num_steps; ++step) {
            const KvStep current = info.step(step);
            pipeline_k.consumer_wait(read_k);
            if constexpr (Traits::kPingPong) take_turn(wg);
            issue_qk();
            // O to the row maxima of the previous step, while S runs: the PV that reads O comes next.
            scale_rows(rowcol_view(tOrO), o_scale);
            wait_v(previous.n);
            issue_pv();
            if constexpr (Traits::kPingPong) pass_turn(wg, Traits::kConsumerWarpGroups);
            warpgroup_wait<1>();  // S of this step is ready, PV of the previous one may still run
            warpgroup_fence_operand(tSrS);
            release_k();
            if (step == info.num_steps - 1) release_q();
            softmax_step(current, cute::false_type{});
            warpgroup_wait<0>();
            warpgroup_fence_operand(tOrO);
            warpgroup_fence_operand(tOrP);
            release_v();
            convert_fragment(tSrS, tOrP);
            previous = current;
        }

        scale_rows(rowcol_view(tOrO), o_scale);
        wait_v(previous.n);
        issue_pv();
        warpgroup_wait<0>();
        warpgroup_fence_operand(tOrO);
        release_v();
        softmax.finalize(o_scale, lse, seen);
        scale_rows(rowcol_view(tOrO), o_scale);
    }

    // A warp group whose 64 rows all lie past the sequence (decode: G packed rows of 128; the last
    // q-tile) computes nothing: it follows the stages, and the turns of ping-pong, so that the
    // pipelines' release counts and the other group's turns stay as in run().
    CUTE_DEVICE static void skip(const WorkInfo<kBlockM, kBlockN>& info, int wg, int thread_in_group, Pipeline& pipeline_k,
                                 Pipeline& pipeline_v, PipelineState& read_k, PipelineState& read_v) {
        const bool releaser = thread_in_group == 0;
        auto pass = [&](Pipeline& pipeline, PipelineState& state) {
            pipeline.consumer_wait(state);  // released in order: never ahead of the other group's phase
            if (releaser) pipeline.consumer_release(state);
            ++state;
        };
        pass(pipeline_k, read_k);
        for (int step = 1; step < info.num_steps; ++step) {
            if constexpr (Traits::kPingPong) take_turn(wg);
            pass(pipeline_k, read_k);
            pass(pipeline_v, read_v);
            if constexpr (Traits::kPingPong) pass_turn(wg, Traits::kConsumerWarpGroups);
        }
        pass(pipeline_v, read_v);
    }

  private:
    // Zeros keys [first, kBlockN) of a V stage (Dv, kBlockN), 16 bytes at a time (8 consecutive head-dim
    // elements stay contiguous under the swizzle), then hands them to the async proxy that wgmma reads
    // through. Both consumer groups may zero the same stage: they write the same zeros.
    template <class StageV>
    CUTE_DEVICE static void zero_keys_from(StageV&& sv, int first, int wg, int thread_in_group) {
        constexpr int kChunks = Traits::kDimV / 8;
        for (int c = thread_in_group; c < (kBlockN - first) * kChunks; c += Traits::kWarpGroupThreads) {
            const int key = first + c / kChunks, d = c % kChunks * 8;
            *reinterpret_cast<uint4*>(&sv(d, key)) = make_uint4(0, 0, 0, 0);
        }
        cutlass::arch::fence_view_async_shared();
        warp_group_sync(wg);
    }
};

}  // namespace ccattn::sm90
