// What the split-KV kernel, the combine kernel and their driver share beyond core::AttnParams: the split
// count and the fp32 workspace of per-split partial results. No CuTe here.
#pragma once

#include <cstdint>

#include "ccattn/status.h"
#include "ccattn/tensor.h"
#include "core/host_device.h"
#include "core/params.h"

namespace ccattn::decode {

// Partial results of split s for query row g (global row: b * Sq + i, or the varlen row) of query
// head h: o_partial[(s * Hq + h) * total_q + g] holds Dv floats (normalized within the split),
// lse_partial the same index (natural log; -inf when the split saw no key of the row).
struct SplitWork {
    int splits = 1;
    int m_tiles = 1;  // q-tiles (kTileM packed rows) per (sequence, KV head)
    float* o_partial = nullptr;
    float* lse_partial = nullptr;

    CCATTN_HD std::int64_t index(const core::AttnParams& p, int s, int h, std::int64_t g) const {
        return (std::int64_t(s) * p.heads_q + h) * p.total_q + g;
    }
};

// The global query row of row i of sequence b.
CCATTN_HD std::int64_t global_row(const core::AttnParams& p, int b, const core::Sequence& seq, std::int64_t i) {
    return p.varlen() ? seq.row_q + i : b * p.seqlen_q + i;
}

// Launches the split kernel for one head-dim pair and dtype (instantiations/split_<Dqk>_<Dv>.cu).
template <int kDqk, int kDv, DType kDType>
Status run_split(const core::AttnParams& p, const SplitWork& w);

}  // namespace ccattn::decode
