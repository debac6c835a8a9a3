// The host launch of one Hopper backward instantiation (the main kernel only). Defined in
// backward_kernel.h and instantiated once per (dtype, head dims) under src/sm90/instantiations/.
#pragma once

#include <cuda_runtime.h>

#include "sm80/backward_params.h"

namespace ccattn::sm90 {

template <class Traits>
cudaError_t launch_backward(const sm80::BackwardParams& bp, cudaStream_t stream);

}  // namespace ccattn::sm90
