// The split-KV combine: per output row, the splits' normalized fp32 outputs o_s and lse_s merge exactly
//   lse = m + log(sum_s exp(lse_s - m)),  out = sum_s exp(lse_s - m) o_s / sum_s exp(lse_s - m),
// m = max_s lse_s. Splits with lse_s = -inf saw no key of the row and carry no weight; a row no split saw
// is empty (out 0, lse -inf); a NaN lse_s (a NaN score in that split) makes the row NaN.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "core/params.h"
#include "decode/split_work.h"

namespace ccattn::decode {

constexpr int kCombineRows = 4;  // one warp per output row
constexpr int kCombineMaxDim = 256;

template <class Element>
__global__ void __launch_bounds__(32 * kCombineRows) combine_kernel(const __grid_constant__ core::AttnParams p,
                                                                    const SplitWork w) {
    constexpr int kSteps = kCombineMaxDim / 128;  // float4 columns of a lane
    const int lane = threadIdx.x % 32, h = blockIdx.y, b = blockIdx.z;
    const std::int64_t i = std::int64_t(blockIdx.x) * kCombineRows + threadIdx.x / 32;
    const core::Sequence seq = core::sequence(p, b);
    if (i >= seq.seqlen_q) return;
    const std::int64_t g = global_row(p, b, seq, i);

    float m = -INFINITY;
    bool nan = false;
    for (int s = 0; s < w.splits; ++s) {
        const float l = w.lse_partial[w.index(p, s, h, g)];
        nan = nan || l != l;
        m = fmaxf(m, l);
    }
    float sum = 0.f;
    float4 acc[kSteps];
    for (int c = 0; c < kSteps; ++c) acc[c] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (!nan && m != -INFINITY) {
        for (int s = 0; s < w.splits; ++s) {
            const std::int64_t at = w.index(p, s, h, g);
            const float l = w.lse_partial[at];
            if (l == -INFINITY) continue;
            const float weight = expf(l - m);
            sum += weight;
            const float* o = w.o_partial + at * p.dim_v;
            for (int c = 0; c < kSteps; ++c) {
                const int col = lane * 4 + c * 128;
                if (col >= p.dim_v) break;
                const float4 x = *reinterpret_cast<const float4*>(o + col);
                acc[c].x += weight * x.x;
                acc[c].y += weight * x.y;
                acc[c].z += weight * x.z;
                acc[c].w += weight * x.w;
            }
        }
    }
    const bool empty = !nan && m == -INFINITY;
    const float inv = nan ? NAN : (empty ? 0.f : 1.f / sum);
    Element* out = static_cast<Element*>(p.out) + core::offset(p.out_strides, b, seq.row_q, i, h);
    for (int c = 0; c < kSteps; ++c) {
        const int col = lane * 4 + c * 128;
        if (col >= p.dim_v) break;
        alignas(8) Element e[4] = {Element(acc[c].x * inv), Element(acc[c].y * inv), Element(acc[c].z * inv),
                                   Element(acc[c].w * inv)};
        *reinterpret_cast<uint2*>(out + col) = *reinterpret_cast<const uint2*>(e);
    }
    if (p.lse != nullptr && lane == 0)
        p.lse[core::lse_offset(p, b, seq.row_q, i, h)] = nan ? NAN : (empty ? -INFINITY : m + logf(sum));
}

}  // namespace ccattn::decode
