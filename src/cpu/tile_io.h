// Moving blocks between the strided bf16/fp16 tensors and contiguous fp32 tiles. Tiles have
// padded row lengths (multiples of kLanes) whose padding is zero, so the micro-kernels never
// branch on the head dimension and padding never turns into NaN.
#pragma once

#include <cstdint>

#include "core/params.h"
#include "cpu/blocks.h"

namespace ccattn::cpu {

// One tensor of the call: base pointer and strides, rows of `dim` elements.
struct TensorRef {
    const void* data = nullptr;
    core::Strides strides;
    int dim = 0;
};

// dst[0, n) = src[0, n) as float, dst[n, padded) = 0.
void load_row(const std::uint16_t* src, bool bf16, int n, int padded, float* dst);
// dst[e] = src[e] * mul rounded to the storage type, e < n.
void store_row(const float* src, float mul, int n, bool bf16, std::uint16_t* dst);

// Rows of the block from a query-side tensor (q, dout): dst[r][ld], zero-padded.
void load_query_rows(const core::AttnParams& p, const TensorRef& t, const QueryBlock& qb, float* dst, int ld);
// The same rows transposed: dst[e][kTileM] for e < padded dim, columns past the block's rows zero.
void load_query_columns(const core::AttnParams& p, const TensorRef& t, const QueryBlock& qb, int padded_dim, float* dst);
// Keys of the block from a key-side tensor (k, v): dst[j][ld] for j < kTileN, rows past count zero.
void load_key_rows(const core::AttnParams& p, const TensorRef& t, const KeyBlock& kb, float* dst, int ld);
// The same keys transposed: dst[e][kTileN] for e < padded dim, columns past count zero.
void load_key_columns(const core::AttnParams& p, const TensorRef& t, const KeyBlock& kb, int padded_dim, float* dst);

}  // namespace ccattn::cpu
