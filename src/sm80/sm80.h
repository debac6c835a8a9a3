// The portable GPU kernels (mma.sync, ldmatrix, cp.async; sm80 and later): entry points that
// src/cuda/backend.cu dispatches to.
#pragma once

#include "ccattn/status.h"
#include "core/params.h"
#include "sm80/backward_params.h"
#include "sm80/backward_tiles.h"

namespace ccattn::sm80 {
Status forward(const core::AttnParams& p);
Status backward(const core::AttnParams& p);

// A main kernel family as the backward's host driver runs it: the kernel, its tiles for the call's
// head dims, and the thread groups of its CTA that take their deterministic-mode turns independently
// (AddOrder::groups).
struct BackwardKernel {
    BackwardMain main;
    KernelTiles tiles;
    int add_groups;
};

// The backward's host driver (preprocess, workspaces, q-range chunks, block-sparse bits, conversions)
// around a main kernel family: backward(p) runs it with sm80's own kernel.
Status backward_with(const core::AttnParams& p, const BackwardKernel& kernel);
}  // namespace ccattn::sm80
