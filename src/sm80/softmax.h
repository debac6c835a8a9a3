// Online softmax over kv tiles (FlashAttention-2): running row max and row sum in fp32, exp2 on scores
// already scaled by scale * log2(e), output accumulator rescaled when the max grows.
#pragma once

#include <cute/tensor.hpp>

#include "sm80/fragment.h"

namespace ccattn::sm80 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor

template <int kRows>
struct OnlineSoftmax {
    float row_max[kRows];  // max score seen so far, log2 units; -inf while a row has seen no key
    float row_sum[kRows];  // this thread's share of sum(exp2(s - row_max)); the quad sums at the end

    __device__ __forceinline__ void reset() {
        CUTE_UNROLL
        for (int r = 0; r < kRows; ++r) {
            row_max[r] = -INFINITY;
            row_sum[r] = 0.f;
        }
    }

    // s: (rows, cols) scores of one kv tile in log2 units, masked entries -inf; replaced in place by
    // exp2(s - new max). o: (rows, cols) output accumulator, rescaled to the new max.
    // kMaybeEmpty: some row of this tile may have no visible key (masked tiles); then a row whose max is
    // still -inf uses 0 as its max so that exp2 gives 0 instead of NaN.
    template <bool kMaybeEmpty, class S, class O>
    __device__ __forceinline__ void update(S& s, O& o) {
        static_assert(decltype(size<0>(s))::value == kRows && decltype(size<0>(o))::value == kRows);
        CUTE_UNROLL
        for (int r = 0; r < kRows; ++r) {
            float m = row_max[r];
            CUTE_UNROLL
            for (int c = 0; c < size<1>(s); ++c) m = fmaxf(m, s(r, c));
            m = quad_max(m);
            const float base = (kMaybeEmpty && m == -INFINITY) ? 0.f : m;
            const float rescale = exp2f(row_max[r] - base);  // 0 on a row's first visible tile
            row_max[r] = m;
            float sum = 0.f;
            CUTE_UNROLL
            for (int c = 0; c < size<1>(s); ++c) {
                s(r, c) = exp2f(s(r, c) - base);
                sum += s(r, c);
            }
            row_sum[r] = row_sum[r] * rescale + sum;
            CUTE_UNROLL
            for (int c = 0; c < size<1>(o); ++c) o(r, c) *= rescale;
        }
    }

    // Divides o by the row sums and returns each row's natural-log sum-exp in lse[r]. seen[r]: this
    // thread found a visible key in row r (the quad's flags are combined here). A row with none is
    // empty: lse -inf, o = 0. A row with one whose sum is NaN (a NaN or +inf score) or 0 (only -inf
    // scores) gets lse NaN and o NaN (docs/decisions.md, non-finite inputs).
    template <class O>
    __device__ __forceinline__ void finalize(O& o, float (&lse)[kRows], const bool (&seen)[kRows]) {
        constexpr float kLn2 = 0.6931471805599453f;
        CUTE_UNROLL
        for (int r = 0; r < kRows; ++r) {
            const float sum = quad_sum(row_sum[r]);
            const bool empty = quad_max(seen[r] ? 1.f : 0.f) == 0.f;
            const bool normal = sum > 0.f;  // false for 0 and NaN
            const float inv = normal ? 1.f / sum : (empty ? 1.f : NAN);
            lse[r] = normal ? (row_max[r] + log2f(sum)) * kLn2 : (empty ? -INFINITY : NAN);
            CUTE_UNROLL
            for (int c = 0; c < size<1>(o); ++c) o(r, c) *= inv;
        }
    }
};

}  // namespace ccattn::sm80
