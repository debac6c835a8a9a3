// The backward's small kernels around the main one:
//   direct tiles: which q-tiles one CTA alone produces the dQ of (DirectDq);
//   preprocess: D = rowsum(dO * O) in fp32 per (query row, head), and zeroes the fp32 dQ accumulator
//               (but the rows of direct q-tiles, whose dQ the main kernel stores: DirectDq);
//   convert:    an fp32 accumulator (dQ, but the rows of direct q-tiles; dK and dV when the q range was
//               chunked) times a scale, in the input dtype, through the output's strides.
// They run over the dense rows R of all sequences (R = b * S + i for fixed length, the varlen row
// otherwise), 16 bytes per thread access; the dispatch checks that rows are 16-byte aligned.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "core/params.h"
#include "sm80/backward_params.h"
#include "sm80/backward_schedule.h"

namespace ccattn::sm80 {

// Tensor element offset of dense row R, head h, for sequences of `seqlen` rows: fixed-length rows split
// into (b, i), varlen rows are tensor rows already (batch stride 0).
__device__ __forceinline__ std::int64_t dense_row_offset(bool varlen, std::int64_t seqlen, const core::Strides& s,
                                                         std::int64_t row, int h) {
    if (varlen) return core::offset(s, 0, 0, row, h);
    const std::int64_t b = row / seqlen;
    return core::offset(s, int(b), 0, row - b * seqlen, h);
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
            const Element* d_row = dout + dense_row_offset(p.varlen(), p.seqlen_q, p.dout_strides, row, h);
            const Element* o_row = out + dense_row_offset(p.varlen(), p.seqlen_q, p.out_strides, row, h);
            for (int c = lane * 8; c < p.dim_v; c += lanes * 8) {
                float a[8], o[8];
                unpack8<Element>(*reinterpret_cast<const uint4*>(d_row + c), a);
                unpack8<Element>(*reinterpret_cast<const uint4*>(o_row + c), o);
#pragma unroll
                for (int k = 0; k < 8; ++k) sum += a[k] * o[k];
            }
            if (!direct_dq_row(bp, row, h)) {
                float4* acc = reinterpret_cast<float4*>(bp.dq_accum + pair * p.dim_qk);
                for (int c = lane; c < p.dim_qk / 4; c += lanes) acc[c] = make_float4(0.f, 0.f, 0.f, 0.f);
            }
        }
        for (int offset = lanes / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
        if (ok && lane == 0) bp.dsum[pair] = sum;
    }
}

// DirectDq::tiles: one thread per (sequence, q-tile), sole_dq_tile's classification.
__global__ void direct_tiles_kernel(BackwardParams bp, std::uint8_t* tiles) {
    const core::AttnParams& p = bp.p;
    const std::int64_t per_sequence = bp.direct.tiles_per_sequence, count = p.batch * per_sequence;
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < count;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const int b = int(idx / per_sequence);
        const core::Sequence seq = core::sequence(p, b);
        tiles[idx] = sole_dq_tile(p.mask_kind, core::sequence_band(p, b, seq), idx - b * per_sequence, bp.direct.q_tile,
                                  p.group, seq.seqlen_q, bp.direct.kv_tile);
    }
}

// An fp32 accumulator [rows, heads, dim] over dense rows and the tensor it is written to.
struct AccumToOutput {
    const float* accum = nullptr;
    void* out = nullptr;
    core::Strides strides;
    std::int64_t rows = 0, seqlen = 0;  // dense rows; rows per sequence (fixed length)
    int heads = 0, dim = 0;
    bool varlen = false;
    float scale = 1.f;
};

// One thread per 8 consecutive elements of one (row, head). `skip`: the call whose direct q-tiles' rows
// are left out (dQ), or one with DirectDq off (dK, dV).
template <class Element>
__global__ void backward_convert_kernel(AccumToOutput a, BackwardParams skip) {
    const int chunks_per_pair = a.dim / 8;
    const std::int64_t chunks = a.rows * a.heads * chunks_per_pair;
    auto* out = static_cast<Element*>(a.out);
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < chunks;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t pair = idx / chunks_per_pair;
        const std::int64_t row = pair / a.heads;
        const int h = int(pair - row * a.heads);
        if (direct_dq_row(skip, row, h)) continue;
        const int c = int(idx % chunks_per_pair) * 8;
        const float4* src = reinterpret_cast<const float4*>(a.accum + pair * a.dim + c);
        const float4 lo = src[0], hi = src[1];
        const float f[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
        uint4 u;
        Element* e = reinterpret_cast<Element*>(&u);
#pragma unroll
        for (int k = 0; k < 8; ++k) e[k] = Element(f[k] * a.scale);
        *reinterpret_cast<uint4*>(out + dense_row_offset(a.varlen, a.seqlen, a.strides, row, h) + c) = u;
    }
}

}  // namespace ccattn::sm80
