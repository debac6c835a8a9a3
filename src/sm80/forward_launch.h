// The forward launcher each instantiation file provides (defined in forward_kernel.h). No CuTe here:
// forward.cu includes it to dispatch.
#pragma once

#include "ccattn/status.h"
#include "ccattn/tensor.h"
#include "core/params.h"

namespace ccattn::sm80 {

// Launches the forward kernel for one head-dim pair and dtype on p.stream. p is validated and
// supported (head dims, alignment, block-sparse tile sizes).
template <int kDqk, int kDv, DType kDType>
Status run_forward(const core::AttnParams& p);

}  // namespace ccattn::sm80
