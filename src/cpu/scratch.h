// Outputs computed into scratch first. A mask with host callables (mask_mod, a custom band,
// block-sparse's predicate) may throw midway, and a failed call must leave the caller's outputs as
// they were: the backend then runs on a copy of the params whose outputs are dense buffers here,
// and commit() copies them into the caller's tensors once the whole call has succeeded.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/params.h"

namespace ccattn::cpu {

class ScratchOutputs {
public:
    // The forward's out and lse, or the backward's dq, dk, dv.
    ScratchOutputs(const core::AttnParams& p, bool backward) : caller_(p), scratch_(p) {
        outputs_.reserve(3);  // add() keeps pointers into the elements
        if (backward) {
            add(scratch_.dq, scratch_.dq_strides, false, p.heads_q, p.dim_qk);
            add(scratch_.dk, scratch_.dk_strides, true, p.heads_kv, p.dim_qk);
            add(scratch_.dv, scratch_.dv_strides, true, p.heads_kv, p.dim_v);
        } else {
            add(scratch_.out, scratch_.out_strides, false, p.heads_q, p.dim_v);
            if (p.lse) {
                lse_.assign(std::size_t(p.total_q * p.heads_q), 0.f);
                scratch_.lse = lse_.data();
                scratch_.lse_batch_stride = p.varlen() ? 0 : p.heads_q * p.seqlen_q;
                scratch_.lse_head_stride = p.varlen() ? p.total_q : p.seqlen_q;
            }
        }
    }
    ScratchOutputs(const ScratchOutputs&) = delete;
    ScratchOutputs& operator=(const ScratchOutputs&) = delete;

    const core::AttnParams& params() const { return scratch_; }

    void commit() const {
        for (const Output& o : outputs_)
            for (std::int64_t r = 0; r < o.rows; ++r)
                for (int h = 0; h < o.heads; ++h) {
                    const BatchRow at = split(r, o.seqlen);
                    std::memcpy(static_cast<std::uint16_t*>(o.caller) + core::offset(o.caller_strides, at.b, 0, at.i, h),
                                o.data.data() + core::offset(o.strides, at.b, 0, at.i, h), std::size_t(o.dim) * 2);
                }
        if (!lse_.empty())
            for (std::int64_t r = 0; r < caller_.total_q; ++r)
                for (int h = 0; h < caller_.heads_q; ++h) {
                    const BatchRow at = split(r, caller_.seqlen_q);
                    caller_.lse[core::lse_offset(caller_, at.b, 0, at.i, h)] =
                        lse_[std::size_t(core::lse_offset(scratch_, at.b, 0, at.i, h))];
                }
    }

private:
    // One 16-bit output: the caller's tensor and its dense stand-in [rows, heads, dim].
    struct Output {
        void* caller;
        core::Strides caller_strides;
        std::vector<std::uint16_t> data;
        core::Strides strides;
        std::int64_t rows, seqlen;
        int heads, dim;
    };

    // Points `ptr` / `strides` (members of scratch_) at a new dense buffer, batch-major for fixed length.
    void add(void*& ptr, core::Strides& strides, bool keys, int heads, int dim) {
        const std::int64_t rows = keys ? caller_.total_k : caller_.total_q;
        const std::int64_t seqlen = keys ? caller_.seqlen_k : caller_.seqlen_q;
        const core::Strides dense = {caller_.varlen() ? 0 : seqlen * heads * dim, std::int64_t(heads) * dim, dim};
        outputs_.push_back({ptr, strides, std::vector<std::uint16_t>(std::size_t(rows * heads * dim)), dense, rows,
                            seqlen, heads, dim});
        ptr = outputs_.back().data.data();
        strides = dense;
    }
    // Dense row r as (sequence, position) in the offsets: a varlen row is its own position.
    struct BatchRow {
        int b;
        std::int64_t i;
    };
    BatchRow split(std::int64_t r, std::int64_t seqlen) const {
        if (caller_.varlen() || seqlen == 0) return {0, r};
        return {int(r / seqlen), r % seqlen};
    }

    const core::AttnParams& caller_;
    core::AttnParams scratch_;
    std::vector<Output> outputs_;
    std::vector<float> lse_;
};

// compute(params) writes p's outputs. When p's mask calls host code it runs on scratch outputs instead,
// copied to p's only after compute returned.
template <class Compute>
void compute_all_or_nothing(const core::AttnParams& p, bool backward, Compute compute) {
    // Native bands and band tensors call no host code: they write in place.
    if (p.mask_kind == MaskKind::band || p.mask_kind == MaskKind::band_tensors) return compute(p);
    const ScratchOutputs scratch(p, backward);
    compute(scratch.params());
    scratch.commit();
}

}  // namespace ccattn::cpu
