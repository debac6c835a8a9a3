// The band mask: row i of a sequence sees keys [lo(i), hi(i)), both non-decreasing in i.
// This is the single definition of the native mask; every backend and every test derives from it.
#pragma once

#include <cstdint>

#include "core/fast_div.h"
#include "core/host_device.h"

namespace ccattn::core {

// Mathematical floor / ceiling of a / b for b > 0 (C++ division truncates toward zero).
CCATTN_HD std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    std::int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}
CCATTN_HD std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return -floor_div(-a, b); }
// floor_div with a 32-bit division when a and b fit (the usual case; 64-bit division is a long
// software sequence on the GPU).
CCATTN_HD std::int64_t floor_div_fast(std::int64_t a, std::int64_t b) {
    constexpr std::int64_t k31 = std::int64_t(1) << 31;
    if (-k31 < a && a < k31 && b < k31) {
        const std::int64_t q = std::int32_t(a) / std::int32_t(b);  // truncates toward zero
        return q * b > a ? q - 1 : q;
    }
    return floor_div(a, b);
}
CCATTN_HD std::int64_t clamp(std::int64_t x, std::int64_t lo, std::int64_t hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}
CCATTN_HD std::int64_t min(std::int64_t a, std::int64_t b) { return a < b ? a : b; }
CCATTN_HD std::int64_t max(std::int64_t a, std::int64_t b) { return a < b ? b : a; }

constexpr std::int64_t kNoWindow = -1;

// The built-in band of one sequence (Sq queries, Sk keys):
//   no mask:  lo = 0, hi = Sk
//   causal:   hi(i) = clamp(floor((i + delta) / cf) + 1, 0, Sk)    (kv j visible iff j*cf <= i + delta)
//   window:   lo(i) = clamp(floor((i + delta) / cf) - window, 0, Sk)
// A window without causal limits only the left edge (flash-attn's window_size = (w, -1)).
struct CompressedBand {
    std::int64_t seqlen_k = 0;
    std::int64_t compress_factor = 1;
    std::int64_t diag_offset = 0;
    std::int64_t window_left = kNoWindow;
    bool causal = false;
    // cf's divider, computed on the host where the band came from a call's mask (BandSpec::cf_div);
    // a band whose fields were set otherwise keeps divisor 1 and divides as floor_div_fast does.
    FastDiv cf_div;

    // The host's divider where it is this band's and i + delta lies in [0, 2^31) (every row but those
    // a negative delta puts before the first key): a multiply-high in place of a division.
    CCATTN_HD std::int64_t diag(std::int64_t i) const {
        const std::int64_t a = i + diag_offset;
        if (std::int64_t(cf_div.divisor) == compress_factor && 0 <= a && a < (std::int64_t(1) << 31))
            return cf_div.div(std::uint32_t(a));
        return floor_div_fast(a, compress_factor);
    }
    CCATTN_HD std::int64_t lo(std::int64_t i) const {
        return window_left == kNoWindow ? 0 : clamp(diag(i) - window_left, 0, seqlen_k);
    }
    CCATTN_HD std::int64_t hi(std::int64_t i) const {
        return causal ? clamp(diag(i) + 1, 0, seqlen_k) : seqlen_k;
    }

    // The band solved for the rows: key j in [0, Sk) is seen by rows [begin, end) of [0, seqlen_q),
    // both non-decreasing in j (the backward masks its transposed scores by them), since
    //   causal: hi(i) > j  <=> floor((i + delta) / cf) >= j      <=> i >= j * cf - delta
    //   window: lo(i) <= j <=> floor((i + delta) / cf) - w <= j  <=> i < (j + w + 1) * cf - delta
    // Within the validation bounds (cf, window < 2^31, |delta| < 2^62, keys < 2^31) j * cf - delta fits
    // int64; (j + w + 1) * cf fits too, and is compared before delta is taken off.
    CCATTN_HD void rows_seeing(std::int64_t j, std::int64_t seqlen_q, std::int64_t& begin, std::int64_t& end) const {
        begin = causal ? clamp(j * compress_factor - diag_offset, 0, seqlen_q) : 0;
        if (window_left == kNoWindow) {
            end = seqlen_q;
        } else {
            const std::int64_t edge = (j + window_left + 1) * compress_factor;
            end = edge >= seqlen_q + diag_offset ? seqlen_q : clamp(edge - diag_offset, 0, seqlen_q);
        }
    }
};

// The default diagonal offset: flash-attn's bottom-right alignment for cf = 1, the seed's
// kv*cf <= q rule (delta = 0) for cf > 1. Varlen applies it per sequence.
CCATTN_HD std::int64_t default_diag_offset(std::int64_t cf, std::int64_t seqlen_q, std::int64_t seqlen_k) {
    return cf == 1 ? seqlen_k - seqlen_q : 0;
}

// The band as the user describes it, before sequence lengths are known (varlen resolves it per
// sequence).
struct BandSpec {
    bool causal = false;
    std::int64_t compress_factor = 1;
    bool has_diag_offset = false;
    std::int64_t diag_offset = 0;
    std::int64_t window_left = kNoWindow;
    FastDiv cf_div;  // set with compress_factor by api::band_spec (CompressedBand::cf_div)

    CCATTN_HD CompressedBand for_sequence(std::int64_t seqlen_q, std::int64_t seqlen_k) const {
        CompressedBand b;
        b.seqlen_k = seqlen_k;
        b.compress_factor = compress_factor;
        b.diag_offset = has_diag_offset ? diag_offset : default_diag_offset(compress_factor, seqlen_q, seqlen_k);
        b.window_left = window_left;
        b.causal = causal;
        b.cf_div = cf_div;
        return b;
    }
};

// Any band type: lo(i) and hi(i), already clamped to [0, Sk].
template <class Band>
CCATTN_HD bool visible(const Band& band, std::int64_t i, std::int64_t j) {
    return band.lo(i) <= j && j < band.hi(i);
}

// Keys [lo, hi) one row sees, both in [0, Sk].
struct RowLimits {
    std::int64_t lo = 0, hi = 0;
};

// Both limits of row i of any band type. A band that computes them in one go overloads this
// (core::SequenceBand: one division, or two loads).
template <class Band>
CCATTN_HD RowLimits row_limits(const Band& band, std::int64_t i) {
    return {band.lo(i), band.hi(i)};
}

}  // namespace ccattn::core
