// The split-KV decode (src/decode): entry points that src/cuda/backend.cu dispatches to. p is
// validated and supported (dtype, head dims, alignment, sizes checked by the backend).
#pragma once

#include "ccattn/status.h"
#include "core/params.h"

namespace ccattn::decode {

// In both, hopper: the split runs in the sm90 forward's split mode (the caller checked
// sm90::supports(p)), else in the portable split kernel.

// Whether a plain forward should run split-KV: num_splits > 1 asks for it; with 0, a grid that would
// leave SMs idle (the heuristic picks more than one split) and, for the portable kernel, few packed
// query rows per head slot (<= 64; block-sparse: query positions per query head).
bool preferred(const core::AttnParams& p, bool hopper);

// Appends p.cache's new rows (if any), runs the split kernel (p.num_splits, or the heuristic's
// choice) into an fp32 workspace (stream-ordered allocation: CUDA-graph capturable) and combines;
// on Hopper with one split, the plain sm90 forward.
Status forward(const core::AttnParams& p, bool hopper);

}  // namespace ccattn::decode
