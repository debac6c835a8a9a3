// Issue one warp group's wgmma over the whole K extent of its operands, as one commit group.
// Waiting is the caller's: warpgroup_wait<N>() lets the newest N groups stay in flight.
#pragma once

#include <cute/tensor.hpp>

namespace ccattn::sm90 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor (the public view type)

// C (+)= A B for fragments (MMA, MMA_M, MMA_K) x (MMA, MMA_N, MMA_K) -> (MMA, MMA_M, MMA_N).
// A is either shared-memory descriptors or registers (the "RS" form); registers read by an
// in-flight wgmma are fenced so the compiler neither reorders nor reuses them early.
template <bool kZeroInit, class TiledMma, class TA, class TB, class TC>
CUTE_DEVICE void wgmma(TiledMma& mma, TA const& a, TB const& b, TC& c) {
    constexpr bool kRegisterA = !cute::is_base_of<GMMA::DescriptorIterator, typename TiledMma::FrgTypeA>::value;
    CUTE_STATIC_ASSERT_V(size<2>(a) == size<2>(b));
    if constexpr (kRegisterA) warpgroup_fence_operand(const_cast<TA&>(a));
    warpgroup_fence_operand(c);
    warpgroup_arrive();
    mma.accumulate_ = kZeroInit ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
    CUTE_UNROLL
    for (int k = 0; k < size<2>(a); ++k) {
        cute::gemm(mma, a(_, _, k), b(_, _, k), c);
        mma.accumulate_ = GMMA::ScaleOut::One;
    }
    warpgroup_commit_batch();
    warpgroup_fence_operand(c);
    if constexpr (kRegisterA) warpgroup_fence_operand(const_cast<TA&>(a));
}

}  // namespace ccattn::sm90
