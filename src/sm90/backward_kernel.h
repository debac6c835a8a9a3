// The Hopper backward main kernel and its launch: one CTA per (q chunk, kv tile, KV head, batch).
// Warp group 0 is the producer (K, V once; Q, dO and row data per q-tile, two stages deep), warp
// groups 1 and 2 the consumers (backward_consumer.h). The launch is instantiated once per (dtype,
// head dims) under src/sm90/instantiations/; the host driver around it (preprocess, workspaces,
// chunks, conversions) is the one sm80::backward_with runs for both kernel families.
#pragma once

#include <new>

#include <cuda_runtime.h>
#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>

#include "sm80/backward_params.h"
#include "sm80/backward_schedule.h"
#include "sm90/backward_consumer.h"
#include "sm90/backward_cta.h"
#include "sm90/backward_params.h"
#include "sm90/backward_producer.h"
#include "sm90/backward_traits.h"

namespace ccattn::sm90 {

template <class Traits, bool kElementMasks, bool kDeterministic, bool kDirect>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    backward_kernel(CUTE_GRID_CONSTANT BackwardKernelParams const kp) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using Barrier = cutlass::arch::ClusterBarrier;
    extern __shared__ __align__(1024) char smem_buf[];
    auto& smem = *reinterpret_cast<typename Traits::SharedStorage*>(smem_buf);
    if (threadIdx.x == 0 && cute::cast_smem_ptr_to_uint(smem_buf) % 1024 != 0) __trap();  // swizzle atoms

    const sm80::BackwardParams& bp = kp.bp;
    const BackwardCta cta = BackwardCta::make(bp, Traits::kBlockN, kDeterministic);
    if (cta.n0 >= cta.seq.seqlen_k) return;  // past this sequence's keys: nothing to write

    if (threadIdx.x == 0) {
        for (int s = 0; s < Traits::kStages; ++s) {
            Barrier::init(&smem.full[s], Traits::kWarpGroupThreads);
            Barrier::init(&smem.empty[s], Traits::kConsumerThreads);
        }
        Barrier::init(&smem.kv_full, Traits::kWarpGroupThreads);
        new (&smem.schedule) sm80::QTileSchedule(bp, cta.band, cta.b, cta.kv_head, cta.n_block, cta.chunk,
                                                 cta.seq.seqlen_q, cta.seq.seqlen_k, Traits::kBlockM, Traits::kBlockN);
        cutlass::arch::fence_barrier_init();
    }
    __syncthreads();  // no CTA-wide barrier after this point

    const int warp_group = threadIdx.x / Traits::kWarpGroupThreads;
    if (warp_group == 0) {
        cutlass::arch::warpgroup_reg_dealloc<Traits::kProducerRegisters>();
        BackwardProducer<Traits, kDeterministic>::run(kp, cta, smem, threadIdx.x);
    } else {
        cutlass::arch::warpgroup_reg_alloc<Traits::kConsumerRegisters>();
        BackwardConsumer<Traits, kElementMasks, kDeterministic, kDirect>::run(kp, cta, smem,
                                                                     threadIdx.x - Traits::kWarpGroupThreads);
    }
#elif defined(__CUDA_ARCH__)
    __trap();  // built for a target without wgmma / setmaxnreg: sm_90a is required
#endif
}

template <class Traits>
cudaError_t launch_backward(const sm80::BackwardParams& bp, cudaStream_t stream) {
    const core::AttnParams& p = bp.p;
    const std::int64_t ctas = core::num_tiles(p.seqlen_k, Traits::kBlockN) * bp.chunks.count;
    if (ctas == 0 || p.heads_kv == 0 || p.batch == 0) return cudaSuccess;
    if (ctas > 0x7fffffff || p.heads_kv > 65535 || p.batch > 65535) return cudaErrorInvalidConfiguration;
    // The driver skips the accumulator rows of direct q-tiles by its tile sizes, which must be the kernel's.
    if (bp.direct.q_tile != Traits::kBlockM || bp.direct.kv_tile != Traits::kBlockN) return cudaErrorInvalidValue;
    // Per-element masks (mask_mod, block-sparse lists), deterministic mode (the driver allocated turn
    // counters) and direct dQ get their own kernels: see BackwardConsumer. Band tensors mask partial
    // tiles by each key's row limits, as the built-in band does, so they share its kernels. The driver
    // turns direct dQ on only for bands without deterministic mode, the one kernel compiled with it.
    const bool band = p.mask_kind == MaskKind::band || p.mask_kind == MaskKind::band_tensors;
    const bool ordered = bp.order.dq != nullptr;
    if (bp.direct.on && (!band || ordered)) return cudaErrorInvalidValue;
    auto kernel = band ? (ordered      ? backward_kernel<Traits, false, true, false>
                          : bp.direct.on ? backward_kernel<Traits, false, false, true>
                                         : backward_kernel<Traits, false, false, false>)
                       : (ordered ? backward_kernel<Traits, true, true, false> : backward_kernel<Traits, true, false, false>);
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Traits::kSharedBytes);
    if (err != cudaSuccess) return err;
    const dim3 grid(unsigned(ctas), unsigned(p.heads_kv), unsigned(p.batch));
    kernel<<<grid, Traits::kThreads, Traits::kSharedBytes, stream>>>(make_backward_params(bp, Traits::kBlockM));
    return cudaGetLastError();
}

}  // namespace ccattn::sm90
