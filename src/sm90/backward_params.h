// The Hopper backward kernel's parameters: the shared driver's BackwardParams and the tensor maps
// through which the producer loads Q and dO and the consumers add dQ into its fp32 accumulator with
// TMA, encoded on the host where a call allows it.
#pragma once

#include <cstdint>

#include <cuda.h>
#include <cutlass/cuda_host_adapter.hpp>

#include "core/host_device.h"
#include "sm80/backward_params.h"
#include "sm80/backward_schedule.h"

namespace ccattn::sm90 {

struct BackwardKernelParams {
    sm80::BackwardParams bp;
    // Q and dO as 4-D maps (head dim, query heads, rows, batch) whose box is one q-tile: `pack` heads
    // of 64 / pack consecutive rows, 64 columns (one 128-byte swizzle row); the dQ accumulator
    // (head dim, query heads, dense rows) with boxes of 32 fp32 columns. Valid when tma_rows.
    CUtensorMap tma_q, tma_dout, tma_dq;
    bool tma_rows = false;

    // Whether q-tile t of sequence `seq` moves by TMA. A varlen sequence's last q-tile does not: its
    // box would reach into the next sequence's rows (the gather zero-fills them instead).
    CCATTN_HD bool tile_by_tma(const core::Sequence& seq, const sm80::QTile& t, int block_m) const {
        return tma_rows && (!bp.p.varlen() || (t.m_block + 1) * block_m <= seq.seqlen_q * t.pack);
    }
};

// A 4-D map (dim, query heads, rows, batch) over `base`, 16-bit elements or fp32, the box
// (box_cols, pack, block_m / pack, 1) with 128-byte swizzling; false where TMA cannot address the
// tensor (a group that does not divide the q-tile, misaligned base or strides, rows past 2^31): then
// rows are gathered with cp.async and dQ is added by atomics.
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

// Band and mask_mod q-tiles pack the whole GQA group; block-sparse ones hold one head (pack 1).
inline BackwardKernelParams make_backward_params(const sm80::BackwardParams& bp, int block_m) {
    BackwardKernelParams kp;
    kp.bp = bp;
    const core::AttnParams& p = bp.p;
    const int pack = p.mask_kind == MaskKind::block_sparse ? 1 : p.group;
    const bool varlen = p.varlen();
    const std::uint64_t rows = std::uint64_t(varlen ? p.total_q : p.seqlen_q), batch = varlen ? 1 : p.batch;
    const CUtensorMapDataType type =
        p.dtype == DType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    // dq_accum is dense [total_q, Hq, Dqk] for fixed lengths too: one batch entry of total_q rows.
    const core::Strides dq_strides{0, std::int64_t(p.heads_q) * p.dim_qk, p.dim_qk};
    kp.tma_rows =
        encode_row_map(kp.tma_q, p.q, type, 2, rows, batch, p.q_strides, p.dim_qk, p, pack, block_m, 64) &&
        encode_row_map(kp.tma_dout, p.dout, type, 2, rows, batch, p.dout_strides, p.dim_v, p, pack, block_m, 64) &&
        encode_row_map(kp.tma_dq, bp.dq_accum, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 4, std::uint64_t(p.total_q), 1,
                       dq_strides, p.dim_qk, p, pack, block_m, 32);
    return kp;
}

}  // namespace ccattn::sm90
