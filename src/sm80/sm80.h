// The portable GPU kernels (mma.sync, ldmatrix, cp.async; sm80 and later): entry points that
// src/cuda/backend.cu dispatches to.
#pragma once

#include "ccattn/status.h"
#include "core/params.h"
#include "sm80/backward_params.h"

namespace ccattn::sm80 {
Status forward(const core::AttnParams& p);
Status backward(const core::AttnParams& p);

// The backward's host driver (preprocess, workspaces, q-range chunks, block-sparse bits, conversions)
// around a main kernel family with sm80::backward_tile's tiles: backward(p) runs it with sm80's own.
// add_groups: the thread groups of the family's CTA that take their deterministic-mode turns
// independently (AddOrder::groups).
Status backward_with(const core::AttnParams& p, BackwardMain main, int add_groups);
}  // namespace ccattn::sm80
