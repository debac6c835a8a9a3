// Reductions over the 4 threads (lanes 4g .. 4g+3) that share an accumulator row: the row layout
// of mma.sync (sm80) and wgmma (sm90) accumulator fragments alike.
#pragma once

namespace ccattn::gpu {

__device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

}  // namespace ccattn::gpu
