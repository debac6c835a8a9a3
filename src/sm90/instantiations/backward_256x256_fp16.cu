// Hopper backward, head dims 256/256, fp16.
#include "sm90/backward_kernel.h"

namespace ccattn::sm90 {
template cudaError_t launch_backward<BackwardTraits<cutlass::half_t, 256, 256>>(const sm80::BackwardParams&, cudaStream_t);
}  // namespace ccattn::sm90
