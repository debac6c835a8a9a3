// Explicit instantiation: sm80 backward, head dims 64/64, fp16.
#include "sm80/backward_kernel.h"

namespace ccattn::sm80 {
template cudaError_t launch_backward<64, 64, DType::fp16>(const BackwardParams&, cudaStream_t);
}  // namespace ccattn::sm80
