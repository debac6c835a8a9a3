// Warp-level GEMM steps over a shared-memory K loop: ldmatrix of step k+1 is issued before the MMAs of
// step k so that shared-memory latency hides behind the tensor cores.
#pragma once

#include <cute/tensor.hpp>

namespace ccattn::sm80 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor

// acc += A B^T with both operands in shared memory.
//   acc  (MMA, MMA_M, MMA_N)        rA (MMA, MMA_M, MMA_K) and rB (MMA, MMA_N, MMA_K) register fragments
//   sA, sB: the copy-partitioned shared tiles (CPY, CPY_M / CPY_N, MMA_K)
template <class Acc, class RA, class RB, class SA, class SB, class TiledMma, class CopyA, class CopyB>
__device__ __forceinline__ void gemm_ss(Acc& acc, RA& rA, RB& rB, const SA& sA, const SB& sB, const TiledMma& mma,
                                        const CopyA& copy_a, const CopyB& copy_b, int tid) {
    auto thr_a = copy_a.get_thread_slice(tid);
    auto thr_b = copy_b.get_thread_slice(tid);
    Tensor rA_view = thr_a.retile_D(rA);  // (CPY, CPY_M, MMA_K)
    Tensor rB_view = thr_b.retile_D(rB);  // (CPY, CPY_N, MMA_K)
    CUTE_STATIC_ASSERT_V(size<1>(rA) == size<1>(acc));
    CUTE_STATIC_ASSERT_V(size<1>(rB) == size<2>(acc));
    CUTE_STATIC_ASSERT_V(size<2>(rA) == size<2>(rB));
    CUTE_STATIC_ASSERT_V(size<1>(sA) == size<1>(rA_view));
    CUTE_STATIC_ASSERT_V(size<1>(sB) == size<1>(rB_view));
    copy(copy_a, sA(_, _, _0{}), rA_view(_, _, _0{}));
    copy(copy_b, sB(_, _, _0{}), rB_view(_, _, _0{}));
    CUTE_UNROLL
    for (int k = 0; k < size<2>(rA); ++k) {
        if (k + 1 < size<2>(rA)) {
            copy(copy_a, sA(_, _, k + 1), rA_view(_, _, k + 1));
            copy(copy_b, sB(_, _, k + 1), rB_view(_, _, k + 1));
        }
        cute::gemm(mma, rA(_, _, k), rB(_, _, k), acc);
    }
}

// acc += A B^T with A already in registers (e.g. the probabilities P) and B in shared memory.
template <class Acc, class RA, class RB, class SB, class TiledMma, class CopyB>
__device__ __forceinline__ void gemm_rs(Acc& acc, const RA& rA, RB& rB, const SB& sB, const TiledMma& mma,
                                        const CopyB& copy_b, int tid) {
    auto thr_b = copy_b.get_thread_slice(tid);
    Tensor rB_view = thr_b.retile_D(rB);
    CUTE_STATIC_ASSERT_V(size<1>(rA) == size<1>(acc));
    CUTE_STATIC_ASSERT_V(size<1>(rB) == size<2>(acc));
    CUTE_STATIC_ASSERT_V(size<2>(rA) == size<2>(rB));
    CUTE_STATIC_ASSERT_V(size<1>(sB) == size<1>(rB_view));
    CUTE_UNROLL
    for (int k = 0; k < size<2>(rA); ++k) {
        copy(copy_b, sB(_, _, k), rB_view(_, _, k));
        cute::gemm(mma, rA(_, _, k), rB(_, _, k), acc);
    }
}

}  // namespace ccattn::sm80
