// ccattn public API: the tile sizes a block-sparse mask must use on the CUDA backend.
#pragma once

#include <cstdint>

#include "ccattn/status.h"
#include "ccattn/tensor.h"

namespace ccattn {

// The q-tile (query positions per tile) and kv-tile (keys per tile) sizes that BlockSparseMask::tile_m
// and tile_n must equal for a CUDA forward with these head dims and dtype on the current device
// (block-sparse lists describe the kernel's own tiles). Returns unsupported for head dims or dtypes the
// CUDA backend does not run, backend_unavailable without a device or without CUDA.
Status cuda_block_sparse_tiles(int dim_qk, int dim_v, DType dtype, std::int64_t& tile_m, std::int64_t& tile_n);

}  // namespace ccattn
