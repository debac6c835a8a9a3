// The backward's two small kernels around the main one:
//   preprocess: D = rowsum(dO * O) in fp32 per (query row, head), and zeroes the fp32 dQ accumulator;
//   convert:    dq = dq_accum * scale in the input dtype, through dq's strides.
// Both run over the dense rows R of all sequences (R = b * Sq + i for fixed length, the varlen row
// otherwise), 16 bytes per thread access; the dispatch checks that rows are 16-byte aligned.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "core/params.h"
#include "sm80/backward_params.h"

namespace ccattn::sm80 {

// Tensor element offset of dense row R, head h: fixed-length rows split into (b, i), varlen rows are
// tensor rows already (batch stride 0).
__device__ __forceinline__ std::int64_t dense_row_offset(const core::AttnParams& p, const core::Strides& s,
                                                         std::int64_t row, int h) {
    if (p.varlen()) return core::offset(s, 0, 0, row, h);
    const std::int64_t b = row / p.seqlen_q;
    return core::offset(s, int(b), 0, row - b * p.seqlen_q, h);
}

template <class Element>
__device__ __forceinline__ void unpack8(const uint4& u, float (&f)[8]) {
    const Element* e = reinterpret_cast<const Element*>(&u);
#pragma unroll
    for (int k = 0; k < 8; ++k) f[k] = float(e[k]);
}

// `lanes` threads (a power of two <= 32, = Dv / 8) share one (row, head) pair. Loops are warp-uniform
// so that every lane takes part in the shuffles.
template <class Element>
__global__ void backward_preprocess_kernel(BackwardParams bp, int lanes) {
    const core::AttnParams& p = bp.p;
    const std::int64_t pairs = p.total_q * p.heads_q;
    const int pairs_per_warp = 32 / lanes;
    const int lane = threadIdx.x % lanes;
    const std::int64_t warp = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) / 32;
    const std::int64_t warps = std::int64_t(gridDim.x) * blockDim.x / 32;
    const auto* dout = static_cast<const Element*>(p.dout);
    const auto* out = static_cast<const Element*>(p.out);
    for (std::int64_t base = warp * pairs_per_warp; base < pairs; base += warps * pairs_per_warp) {
        const std::int64_t pair = base + threadIdx.x % 32 / lanes;
        const bool ok = pair < pairs;
        const std::int64_t row = pair / p.heads_q;
        const int h = int(pair % p.heads_q);
        float sum = 0.f;
        if (ok) {
            const Element* d_row = dout + dense_row_offset(p, p.dout_strides, row, h);
            const Element* o_row = out + dense_row_offset(p, p.out_strides, row, h);
            for (int c = lane * 8; c < p.dim_v; c += lanes * 8) {
                float a[8], o[8];
                unpack8<Element>(*reinterpret_cast<const uint4*>(d_row + c), a);
                unpack8<Element>(*reinterpret_cast<const uint4*>(o_row + c), o);
#pragma unroll
                for (int k = 0; k < 8; ++k) sum += a[k] * o[k];
            }
            float4* acc = reinterpret_cast<float4*>(bp.dq_accum + pair * p.dim_qk);
            for (int c = lane; c < p.dim_qk / 4; c += lanes) acc[c] = make_float4(0.f, 0.f, 0.f, 0.f);
        }
        for (int offset = lanes / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
        if (ok && lane == 0) bp.dsum[pair] = sum;
    }
}

// One thread per 8 consecutive elements of one (row, head).
template <class Element>
__global__ void backward_convert_dq_kernel(BackwardParams bp) {
    const core::AttnParams& p = bp.p;
    const int chunks_per_pair = p.dim_qk / 8;
    const std::int64_t chunks = p.total_q * p.heads_q * chunks_per_pair;
    auto* dq = static_cast<Element*>(p.dq);
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < chunks;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t pair = idx / chunks_per_pair;
        const int c = int(idx % chunks_per_pair) * 8;
        const float4* src = reinterpret_cast<const float4*>(bp.dq_accum + pair * p.dim_qk + c);
        const float4 lo = src[0], hi = src[1];
        const float f[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
        uint4 u;
        Element* e = reinterpret_cast<Element*>(&u);
#pragma unroll
        for (int k = 0; k < 8; ++k) e[k] = Element(f[k] * p.scale);
        *reinterpret_cast<uint4*>(dq + dense_row_offset(p, p.dq_strides, pair / p.heads_q, int(pair % p.heads_q)) + c) = u;
    }
}

}  // namespace ccattn::sm80
