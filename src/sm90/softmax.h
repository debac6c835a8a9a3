// Online softmax over the rows of a warp group's S accumulator, in base 2: p = exp2(s * scale_log2
// - m * scale_log2) with m the running row maximum of the raw scores (scale_log2 > 0). Each row
// is spread over the 4 threads of a quad, so row reductions finish with two shuffles.
// Unlike sm80's OnlineSoftmax the output rescale is left to the caller: the overlapped mainloop
// may only touch O once the previous PV wgmma has finished.
#pragma once

#include <cmath>

#include <cute/tensor.hpp>

#include "gpu/quad_reduce.h"

namespace ccattn::sm90 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor (the public view type)

using gpu::quad_max;
using gpu::quad_sum;

template <int kRows>
struct OnlineSoftmax {
    static constexpr float kLn2 = 0.6931471805599453f;
    static constexpr int kPartials = 4;

    float row_max[kRows];
    float row_sum[kRows];  // this thread's partial sums; reduced over the quad in finalize()
    float scale_log2;

    CUTE_DEVICE explicit OnlineSoftmax(float scale_log2_) : scale_log2(scale_log2_) {}

    // Turns the scores s (rows, cols) of one kv tile into unnormalized probabilities and returns in
    // o_scale the factor by which the output accumulated so far must be rescaled.
    // kCheckInf: masked tiles can leave a row at -inf so far; its base is then 0, not -inf - -inf.
    template <bool kFirst, bool kCheckInf, class Tensor>
    CUTE_DEVICE void update(Tensor& s, float (&o_scale)[kRows]) {
        static_assert(decltype(rank(s))::value == 2);
        CUTE_STATIC_ASSERT_V(size<0>(s) == Int<kRows>{});
        static_assert(decltype(size<1>(s))::value % kPartials == 0);
        CUTE_UNROLL
        for (int m = 0; m < kRows; ++m) {
            // Four partial maxima and sums, then a tree: a dependent chain of cols / 4 + 2 operations
            // instead of cols (FA4's sm90 reductions), short enough for the exponentials to hide.
            float mx[kPartials], sum[kPartials];
            CUTE_UNROLL
            for (int k = 0; k < kPartials; ++k) mx[k] = s(m, k);
            CUTE_UNROLL
            for (int n = kPartials; n < size<1>(s); ++n) mx[n % kPartials] = fmaxf(mx[n % kPartials], s(m, n));
            const float running = kFirst ? -INFINITY : row_max[m];
            const float row = quad_max(fmaxf(fmaxf(mx[0], mx[1]), fmaxf(fmaxf(mx[2], mx[3]), running)));
            const float base = (kCheckInf && row == -INFINITY) ? 0.f : row * scale_log2;
            o_scale[m] = kFirst ? 1.f : exp2f(row_max[m] * scale_log2 - base);
            row_max[m] = row;
            CUTE_UNROLL
            for (int n = 0; n < size<1>(s); ++n) {
                s(m, n) = exp2f(s(m, n) * scale_log2 - base);
                sum[n % kPartials] = n < kPartials ? s(m, n) : sum[n % kPartials] + s(m, n);
            }
            const float total = (sum[0] + sum[1]) + (sum[2] + sum[3]);
            row_sum[m] = kFirst ? total : row_sum[m] * o_scale[m] + total;
        }
    }

    // After the last tile: the factor 1/sum that normalizes the output and the natural-log lse.
    // seen[m]: row m has a visible key (the mask's knowledge: the softmax cannot tell masked scores
    // from -inf ones). A row without one is empty: factor 0, lse -inf. A NaN sum (a NaN or +inf
    // score), or a sum of 0 in a row with visible keys (only -inf scores), gives factor and lse NaN
    // (docs/decisions.md, non-finite inputs).
    CUTE_DEVICE void finalize(float (&o_scale)[kRows], float (&lse)[kRows], const bool (&seen)[kRows]) {
        CUTE_UNROLL
        for (int m = 0; m < kRows; ++m) {
            const float sum = quad_sum(row_sum[m]);
            const bool empty = sum == 0.f && !seen[m];
            const bool undefined = sum != sum || (sum == 0.f && seen[m]);
            o_scale[m] = empty ? 0.f : (undefined ? NAN : 1.f / sum);
            lse[m] = empty ? -INFINITY : (undefined ? NAN : row_max[m] * scale_log2 * kLn2 + logf(sum));
        }
    }
};

// Multiplies each row of a (rows, cols) view by its factor.
template <int kRows, class Tensor>
CUTE_DEVICE void scale_rows(Tensor&& t, const float (&factor)[kRows]) {
    CUTE_STATIC_ASSERT_V(size<0>(t) == Int<kRows>{});
    CUTE_UNROLL
    for (int m = 0; m < kRows; ++m) {
        CUTE_UNROLL
        for (int n = 0; n < size<1>(t); ++n) t(m, n) *= factor[m];
    }
}

}  // namespace ccattn::sm90
