// The Hopper forward kernel: a persistent grid of warp-specialized CTAs. Warp group 0 is the
// producer (TMA loads of K and V, and of Q where the call allows), warp groups 1.. are consumers
// (64 packed query rows each: Q gather where TMA cannot load it, wgmma mainloop, epilogue). The
// producer draws the work tiles and describes each once for the consumers (tile_queue.h), so both
// roles walk the same tiles in the same order; with split-KV a work tile is one split of a q-tile's kv steps
// and its rows go to the partial results.
#pragma once

#include <cstdint>
#include <new>

#include <cute/tensor.hpp>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "sm90/consumer.h"
#include "sm90/epilogue.h"
#include "sm90/kernel_params.h"
#include "sm90/producer.h"
#include "sm90/query_load.h"
#include "sm90/work_tile.h"

namespace ccattn::sm90 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor (the public view type)

enum class WarpGroupRole { producer = 0, consumer = 1 };

template <class Traits>
__global__ void __launch_bounds__(Traits::kThreads, 1) forward_kernel(CUTE_GRID_CONSTANT KernelParams<Traits> const params) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using Pipeline = typename Traits::Pipeline;
    using PipelineState = typename Traits::PipelineState;
    using SharedStorage = typename Traits::SharedStorage;
    using Info = WorkInfo<Traits::kBlockM, Traits::kBlockN>;
    using TileQueue = typename Traits::TileQueue;

    extern __shared__ __align__(1024) char smem_buf[];
    SharedStorage& smem = *reinterpret_cast<SharedStorage*>(smem_buf);
    // The swizzled layouts assume 1024-byte aligned buffers; fail loudly rather than compute garbage.
    if (threadIdx.x == 0 && cast_smem_ptr_to_uint(smem_buf) % 1024 != 0) __trap();

    const int warp_group = threadIdx.x / Traits::kWarpGroupThreads;
    const int thread_in_group = threadIdx.x % Traits::kWarpGroupThreads;
    const WarpGroupRole role = warp_group == 0 ? WarpGroupRole::producer : WarpGroupRole::consumer;

    if (threadIdx.x == 0) {
        if (params.paged) {
            prefetch_tma_descriptor(&params.page_k);
            prefetch_tma_descriptor(&params.page_v);
        } else {
            prefetch_tma_descriptor(params.tma_k.get_tma_descriptor());
            prefetch_tma_descriptor(params.tma_v.get_tma_descriptor());
        }
    }

    // Full barriers: one arrival (the issuing thread's expect_tx) plus the TMA bytes. Empty
    // barriers: one arrival per consumer warp group (its first thread, once its wgmma reading the
    // stage has completed), rather than 128 per group.
    typename Pipeline::Params pipeline_params;
    pipeline_params.role = role == WarpGroupRole::producer ? Pipeline::ThreadCategory::Producer
                                                           : Pipeline::ThreadCategory::Consumer;
    pipeline_params.is_leader = threadIdx.x == 0;
    pipeline_params.num_consumers = Traits::kConsumerWarpGroups;
    pipeline_params.transaction_bytes = Traits::kTmaBytesK;
    Pipeline pipeline_k(smem.pipeline_k, pipeline_params, Shape<_1, _1, _1>{});
    pipeline_params.transaction_bytes = Traits::kTmaBytesV;
    Pipeline pipeline_v(smem.pipeline_v, pipeline_params, Shape<_1, _1, _1>{});
    // Q slices by TMA: the producer's expect_tx arrival, the releasing thread of the warp group.
    if (threadIdx.x == 0) {
        for (int wg = 0; wg < Traits::kConsumerWarpGroups; ++wg) {
            cutlass::arch::ClusterBarrier::init(&smem.q_full[wg], 1);
            cutlass::arch::ClusterBarrier::init(&smem.q_empty[wg], 1);
        }
        TileQueue::init(smem.tiles);
        cutlass::arch::fence_barrier_init();
    }
    __syncthreads();  // barrier initialization visible to all; no CTA-wide barrier after this point

    const TileScheduler& scheduler = params.scheduler;
    if (role == WarpGroupRole::producer) {
        cutlass::arch::warpgroup_reg_dealloc<Traits::kProducerRegisters>();
        if (thread_in_group != 0) return;  // one thread issues every TMA load
        PipelineState write_k = cutlass::make_producer_start_state<Pipeline>();
        PipelineState write_v = cutlass::make_producer_start_state<Pipeline>();
        std::uint32_t q_phases = ~0u;  // a fresh barrier passes parity 1 at once: every slice starts free
        typename TileQueue::State tile_write = TileQueue::producer_start();
        for (std::int64_t w = blockIdx.x;;) {
            // The tile is described once, in its queue entry (shared memory), for both roles.
            auto& entry = TileQueue::acquire(smem.tiles, tile_write);
            entry.index = w;
            if (w >= scheduler.num_tiles()) {
                TileQueue::publish(smem.tiles, tile_write);
                break;
            }
            const std::int64_t next = TileQueue::draw(params.tile_counter, w);
            entry.work = scheduler.tile(w);
            new (&entry.info) Info(params.attn, entry.work, scheduler);
            TileQueue::publish(smem.tiles, tile_write);
            if (entry.info.num_steps > 0)
                Producer<Traits>::load(params, entry.info, entry.work, smem, pipeline_k, pipeline_v, write_k, write_v,
                                       q_phases);
            w = next;
        }
    } else {
        cutlass::arch::warpgroup_reg_alloc<Traits::kConsumerRegisters>();
        using Consumer = sm90::Consumer<Traits>;
        using Epilogue = sm90::Epilogue<Traits>;
        const int wg = warp_group - 1;
        const int slice_row0 = wg * Traits::kRowsPerWarpGroup;
        Tensor sQ = make_tensor(make_smem_ptr(smem.q.data() + wg * Traits::kSmemQElements),
                                typename Traits::SmemLayoutQ{});  // (64, Dqk)
        typename Consumer::Mask mask;
        PipelineState read_k, read_v;
        std::uint32_t q_phase = 0;
        if constexpr (Traits::kPingPong) {
            if (wg == 0) take_first_turn();
        }
        // One work tile, described by the producer's entry (read in place, shared memory).
        auto consume = [&](const WorkTile& work, const Info& info) {
            if (!info.in_sequence) return;
            const bool split = scheduler.splits > 1;
            if (info.num_steps == 0) {
                if (split) Epilogue::store_split_empty(params.attn, params.split, info, work, wg, thread_in_group);
                else Epilogue::store_empty(params.attn, info, work.batch, wg, thread_in_group);
                return;
            }
            if (Epilogue::valid_rows(info, slice_row0) <= 0) {
                Consumer::skip(info, wg, thread_in_group, pipeline_k, pipeline_v, read_k, read_v);
                return;
            }
            mask.set_rows(info.band, info, slice_row0, thread_in_group);
            if (params.q_by_tma) {
                cutlass::arch::ClusterBarrier::wait(&smem.q_full[wg], q_phase);
                q_phase ^= 1u;
            } else {
                load_query<typename Traits::Element>(params.attn, info, work.batch, slice_row0, sQ, thread_in_group, wg);
            }
            // Once this group's last S has read its slice, the producer may load the next tile's Q there.
            auto release_q = [&] {
                if (params.q_by_tma && thread_in_group == 0)
                    cutlass::arch::ClusterBarrier::arrive(&smem.q_empty[wg]);
            };
            auto tOrO = Consumer::make_output_fragment();
            float lse[Consumer::kRows];
            Consumer::run(params, info, mask, smem, wg, thread_in_group, pipeline_k, pipeline_v, read_k, read_v,
                          release_q, tOrO, lse);
            if (split) Epilogue::store_split(params.attn, params.split, info, work, wg, thread_in_group, tOrO, lse);
            else Epilogue::store(params.attn, info, work.batch, wg, thread_in_group, tOrO, lse);
        };
        typename TileQueue::State tile_read;
        for (;;) {
            const auto& entry = TileQueue::wait(smem.tiles, tile_read);
            if (entry.index >= scheduler.num_tiles()) break;
            consume(entry.work, entry.info);
            TileQueue::release(smem.tiles, tile_read);
        }
    }
#elif defined(__CUDA_ARCH__)
    __trap();  // built for a target without wgmma / setmaxnreg: sm_90a is required
#endif
}

}  // namespace ccattn::sm90
