// The portable GPU kernels (mma.sync, ldmatrix, cp.async; sm80 and later): entry points that
// src/cuda/backend.cu dispatches to.
#pragma once

#include "ccattn/status.h"
#include "core/params.h"

namespace ccattn::sm80 {
Status forward(const core::AttnParams& p);
Status backward(const core::AttnParams& p);
}  // namespace ccattn::sm80
