// The band of one sequence, whichever mechanism gives it: the built-in band (arithmetic on
// causal / cf / delta / window) or band tensors (two loads per row). Every GPU kernel reads its
// band through this one type, so the built-in band and band tensors share the tile classification
// (core/schedule.h, from the tile's edge rows: O(1) per tile in the forward, binary searches over
// rows in the backward) and the in-register masks (per-row limits, src/gpu/register_mask.h).
//
// The source is chosen at run time and is uniform across a call, so its branch never diverges and
// no kernel is instantiated twice for it; it runs per row and per tile bound, never per element.
// A new band mechanism is one more source here (a type with lo(i) / hi(i) clamped to [0, Sk]),
// and every kernel that reads a SequenceBand runs it.
#pragma once

#include <cstdint>

#include "ccattn/mask.h"
#include "core/band.h"
#include "core/band_tensors.h"
#include "core/host_device.h"
#include "core/params.h"
#include "core/schedule.h"

namespace ccattn::core {

struct SequenceBand {
    CompressedBand formula;  // the built-in band; also the element predicate of mask_mod / block-sparse
    TensorBand tensors;      // band tensors, when from_tensors
    bool from_tensors = false;

    SequenceBand() = default;
    // Implicit: a built-in band is a band source (code that holds a CompressedBand passes it as is).
    CCATTN_HD SequenceBand(const CompressedBand& band) : formula(band) {}
    CCATTN_HD explicit SequenceBand(const TensorBand& band) : tensors(band), from_tensors(true) {}

    CCATTN_HD std::int64_t lo(std::int64_t i) const { return from_tensors ? tensors.lo(i) : formula.lo(i); }
    CCATTN_HD std::int64_t hi(std::int64_t i) const { return from_tensors ? tensors.hi(i) : formula.hi(i); }

    CCATTN_HD std::int64_t seqlen_k() const { return from_tensors ? tensors.seqlen_k : formula.seqlen_k; }

    // Rows [begin, end) of [0, seqlen_q) that see key j in [0, Sk): the built-in band solved in closed
    // form, band tensors by binary search (once per key and kv tile in the backward, never per element).
    CCATTN_HD void rows_seeing(std::int64_t j, std::int64_t seqlen_q, std::int64_t& begin, std::int64_t& end) const {
        if (from_tensors) tensors.rows_seeing(j, seqlen_q, begin, end);
        else formula.rows_seeing(j, seqlen_q, begin, end);
    }

    // Both limits of row i at once: one division (CompressedBand::diag) for the built-in band.
    CCATTN_HD RowLimits limits(std::int64_t i) const {
        if (from_tensors) return {tensors.lo(i), tensors.hi(i)};
        const CompressedBand& b = formula;
        const std::int64_t diag = b.diag(i);
        return {b.window_left == kNoWindow ? 0 : clamp(diag - b.window_left, 0, b.seqlen_k),
                b.causal ? clamp(diag + 1, 0, b.seqlen_k) : b.seqlen_k};
    }
};

CCATTN_HD RowLimits row_limits(const SequenceBand& band, std::int64_t i) { return band.limits(i); }

// core::first_row_hi_above / lo_above for band tensors, which answer from their key rows, and for
// either source (the built-in band takes core/schedule.h's binary searches).
CCATTN_HD std::int64_t first_row_hi_above(const TensorBand& band, std::int64_t j, std::int64_t seqlen_q) {
    return band.hi_above(j, seqlen_q);
}
CCATTN_HD std::int64_t first_row_lo_above(const TensorBand& band, std::int64_t j, std::int64_t seqlen_q) {
    return band.lo_above(j, seqlen_q);
}
CCATTN_HD std::int64_t first_row_hi_above(const SequenceBand& band, std::int64_t j, std::int64_t seqlen_q) {
    return band.from_tensors ? first_row_hi_above(band.tensors, j, seqlen_q)
                             : first_row_hi_above(band.formula, j, seqlen_q);
}
CCATTN_HD std::int64_t first_row_lo_above(const SequenceBand& band, std::int64_t j, std::int64_t seqlen_q) {
    return band.from_tensors ? first_row_lo_above(band.tensors, j, seqlen_q)
                             : first_row_lo_above(band.formula, j, seqlen_q);
}

// The packed rows that see key j (core::packed_rows_seeing) under either source.
CCATTN_HD RowSpan packed_rows_seeing(const SequenceBand& band, std::int64_t j, std::int64_t seqlen_q,
                                     std::int64_t group) {
    if (j < 0 || j >= band.seqlen_k()) return {};
    std::int64_t begin = 0, end = 0;
    band.rows_seeing(j, seqlen_q, begin, end);
    return {begin * group, end * group};
}

// The band of sequence b of a call: band tensors for MaskKind::band_tensors, else the built-in band
// with that sequence's lengths (default offsets per sequence, shifted by a cache call's positions).
CCATTN_HD SequenceBand sequence_band(const AttnParams& p, int b, const Sequence& s) {
    if (p.mask_kind == MaskKind::band_tensors) return SequenceBand(tensor_band(p, b, s));
    return builtin_band(p, b, s);
}

// Whether a call's rows are ordered by work, the last q-tile seeing the most keys (launch it first):
// causal bands, and band tensors, whose hi never decreases.
CCATTN_HD bool later_rows_see_more(const AttnParams& p) {
    return p.band.causal || p.mask_kind == MaskKind::band_tensors;
}

}  // namespace ccattn::core
