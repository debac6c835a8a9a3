// The split-KV decode (src/decode): entry points that src/cuda/backend.cu dispatches to. p is
// validated and supported (dtype, head dims, alignment, sizes checked by the backend).
#pragma once

#include "ccattn/status.h"
#include "core/params.h"

namespace ccattn::decode {

// Whether a plain forward should run split-KV: num_splits > 1 asks for it; with 0, few packed query
// rows per head slot (<= 64; block-sparse: query positions per query head) and a grid that would
// leave SMs idle (the heuristic picks more than one split).
bool preferred(const core::AttnParams& p);

// Appends p.cache's new rows (if any), runs the split kernel (p.num_splits, or the heuristic's
// choice) into an fp32 workspace (stream-ordered allocation: CUDA-graph capturable) and combines.
Status forward(const core::AttnParams& p);

}  // namespace ccattn::decode
