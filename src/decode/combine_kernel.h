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
constexpr int kCombineMaxSplits = 256;  // what a caller may force (num_splits)

// Latency, not bandwidth, bounds it (a decode step merges 64 rows of ~32 splits): the lanes read the
// splits' lse at once, the weights go through shared memory, and the partial rows are read several
// splits at a time, so a row costs a few memory round trips rather than two per split.
template <class Element>
__global__ void __launch_bounds__(32 * kCombineRows) combine_kernel(const __grid_constant__ core::AttnParams p,
                                                                    const SplitWork w) {
    constexpr int kSteps = kCombineMaxDim / 128;  // float4 columns of a lane
    constexpr int kPerLane = kCombineMaxSplits / 32;
    __shared__ float weights[kCombineRows][kCombineMaxSplits];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, h = blockIdx.y, b = blockIdx.z;
    const std::int64_t i = std::int64_t(blockIdx.x) * kCombineRows + warp;
    const core::Sequence seq = core::sequence(p, b);
    if (i >= seq.seqlen_q) return;
    const std::int64_t g = global_row(p, b, seq, i);

    float l[kPerLane];
    float m = -INFINITY;
    bool nan = false;
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
        const int s = k * 32 + lane;
        l[k] = s < w.splits ? w.lse_partial[w.index(p, s, h, g)] : -INFINITY;
        nan = nan || l[k] != l[k];
        m = fmaxf(m, l[k]);
    }
#pragma unroll
    for (int d = 16; d > 0; d /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, d));
    nan = __any_sync(0xffffffffu, nan);
    const bool empty = !nan && m == -INFINITY;
    float sum = 0.f;
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
        const int s = k * 32 + lane;
        const float weight = nan || empty || l[k] == -INFINITY ? 0.f : expf(l[k] - m);  // a split that saw no key: none
        sum += weight;
        if (s < w.splits) weights[warp][s] = weight;
    }
#pragma unroll
    for (int d = 16; d > 0; d /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, d);
    __syncwarp();

    float4 acc[kSteps];
    for (int c = 0; c < kSteps; ++c) acc[c] = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 4
    for (int s = 0; s < w.splits; ++s) {
        const float weight = weights[warp][s];
        const float* o = w.o_partial + w.index(p, s, h, g) * p.dim_v;
#pragma unroll
        for (int c = 0; c < kSteps; ++c) {
            const int col = lane * 4 + c * 128;
            if (col >= p.dim_v) break;
            const float4 x = *reinterpret_cast<const float4*>(o + col);  // finite where weight > 0; 0 * NaN never summed
            if (weight > 0.f) {
                acc[c].x += weight * x.x;
                acc[c].y += weight * x.y;
                acc[c].z += weight * x.z;
                acc[c].w += weight * x.w;
            }
        }
    }
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
