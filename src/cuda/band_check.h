// The device pass over band tensors that the CUDA backend makes before a kernel writes: the check
// (BandTensors::validate: the clamped lo and hi each non-decreasing within a sequence) and, for the
// backward, the q-tile visits of its kv tiles, which size its q-range chunks as the built-in band's
// exact count does (sm80::q_chunks): one pass, one small result read back.
#pragma once

#include <cstdint>

#include "ccattn/status.h"
#include "core/params.h"
#include "sm80/backward_tiles.h"

namespace ccattn::cuda {

// For p.check_band_rows, on p's stream (a synchronization). invalid_argument naming mask.lo or
// mask.hi with the first offending row and sequence, as on the host; nothing else is written. With
// `tile` (the backward's tiles), `visits` gets the q-tile visits summed over every sequence's kv
// tiles (one KV head), as core::q_tile_range counts them.
Status check_band_rows(const core::AttnParams& p, const sm80::KernelTiles* tile, std::int64_t& visits);

}  // namespace ccattn::cuda
