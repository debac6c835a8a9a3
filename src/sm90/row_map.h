// Tensor maps over the query-row tensors (Q, dO, the dQ accumulator) whose box is one slice of
// GQA-packed rows: `pack` query heads of block_m / pack consecutive positions. The Hopper forward
// loads Q with it, the backward Q, dO and its dQ reduce-adds.
#pragma once

#include <cstdint>

#include <cuda.h>
#include <cutlass/cuda_host_adapter.hpp>

#include "core/params.h"

namespace ccattn::sm90 {

// A 4-D map (dim, query heads, rows, batch) over `base`, 16-bit elements or fp32, the box
// (box_cols, pack, block_m / pack, 1) with 128-byte swizzling; false where TMA cannot address the
// tensor (a group that does not divide the q-tile, misaligned base or strides, rows past 2^31): then
// rows are gathered with cp.async (and the backward adds dQ by atomics).
inline bool encode_row_map(CUtensorMap& map, const void* base, CUtensorMapDataType type, int element_bytes,
                           std::uint64_t rows, std::uint64_t batch, const core::Strides& st, int dim,
                           const core::AttnParams& p, int pack, int block_m, int box_cols) {
    if (rows == 0 || rows >= (std::uint64_t(1) << 31) || pack <= 0 || block_m % pack != 0) return false;
    if (reinterpret_cast<std::uintptr_t>(base) % 16 != 0) return false;
    // Extent-1 dimensions may carry any stride: they get a harmless one.
    auto bytes = [&](std::int64_t stride, std::uint64_t extent) -> std::int64_t {
        return element_bytes * (extent > 1 ? stride : dim);
    };
    const std::int64_t strides[3] = {bytes(st.head, std::uint64_t(p.heads_q)), bytes(st.row, rows), bytes(st.batch, batch)};
    for (std::int64_t s : strides)
        if (s <= 0 || s % 16 != 0 || s >= (std::int64_t(1) << 40)) return false;
    const cuuint64_t dims[4] = {cuuint64_t(dim), cuuint64_t(p.heads_q), rows, batch};
    const cuuint64_t byte_strides[3] = {cuuint64_t(strides[0]), cuuint64_t(strides[1]), cuuint64_t(strides[2])};
    const cuuint32_t box[4] = {cuuint32_t(box_cols), cuuint32_t(pack), cuuint32_t(block_m / pack), 1};
    const cuuint32_t element_strides[4] = {1, 1, 1, 1};
    const CUresult r = cutlass::call_cuTensorMapEncodeTiled(
        &map, type, 4, const_cast<void*>(base), dims, byte_strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
        CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS;
}

}  // namespace ccattn::sm90
