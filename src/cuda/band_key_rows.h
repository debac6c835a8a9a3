// Band tensors' key rows (core::KeyRows): for every key of a call, the first row of its sequence
// whose hi exceeds it and the first whose lo does, found once on the device so that the backward's
// CTAs look them up (their tile schedule and their keys' row limits) instead of each running binary
// searches over the edge tensors before its first q-tile.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "core/params.h"

namespace ccattn::cuda {

// rows: 2 * p.total_k int32 (rows of a sequence stay below 2^31), on p's stream; p.band_rows is
// read, not its key rows.
cudaError_t fill_band_key_rows(const core::AttnParams& p, std::int32_t* rows);

}  // namespace ccattn::cuda
