// Hopper backward, head dims 256/256, bf16.
#include "sm90/backward_kernel.h"

namespace ccattn::sm90 {
template cudaError_t launch_backward<BackwardTraits<cutlass::bfloat16_t, 256, 256>>(const sm80::BackwardParams&, cudaStream_t);
}  // namespace ccattn::sm90
