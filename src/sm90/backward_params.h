// The Hopper backward kernel's parameters: the shared driver's BackwardParams and the tensor maps
// through which the producer loads Q and dO and the consumers add dQ into its fp32 accumulator with
// TMA, encoded on the host where a call allows it.
#pragma once

#include <cstdint>

#include <cuda.h>

#include "core/host_device.h"
#include "sm80/backward_params.h"
#include "sm80/backward_schedule.h"
#include "sm90/row_map.h"

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
