// Appending this call's keys and values to the KV cache: row i of k_new / v_new of sequence b goes to
// cache row cache_seqlens[b] + i (through the page table for a paged cache). Runs before the split
// kernel on the same stream, which then reads the appended rows like any other.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "core/params.h"

namespace ccattn::decode {

constexpr int kElementBytes = 2;  // bf16 / fp16

// One warp per (new row, KV head, sequence); 16-byte chunks (rows are 16-byte aligned, checked on the host).
__global__ void __launch_bounds__(32) append_kernel(const __grid_constant__ core::AttnParams p) {
    const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const core::Sequence seq = core::sequence(p, b);
    const std::int64_t j = seq.seqlen_k - p.cache.new_rows + i;
    auto copy_row = [&](const void* src, const core::Strides& src_strides, const void* cache,
                        const core::Strides& cache_strides, int dim) {
        const auto* from = reinterpret_cast<const uint4*>(static_cast<const char*>(src) +
                                                          core::offset(src_strides, b, 0, i, h) * kElementBytes);
        auto* to = reinterpret_cast<uint4*>(const_cast<char*>(static_cast<const char*>(cache)) +
                                            core::key_offset(p, cache_strides, b, seq, j, h) * kElementBytes);
        for (int c = threadIdx.x; c < dim * kElementBytes / 16; c += 32) to[c] = from[c];
    };
    copy_row(p.cache.k_new, p.cache.k_new_strides, p.k, p.k_strides, p.dim_qk);
    copy_row(p.cache.v_new, p.cache.v_new_strides, p.v, p.v_strides, p.dim_v);
}

}  // namespace ccattn::decode
