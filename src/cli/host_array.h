// Contiguous host arrays of the ccattn dtypes, and the inputs / outputs of one attention call.
#pragma once

#include <cstdint>
#include <vector>

#include "ccattn/tensor.h"

namespace ccattn::cli {

// A row-major host array. Storage always has at least one element so views of empty arrays are
// non-null (a null view means "absent" to the library).
struct HostArray {
    DType dtype = DType::bf16;
    std::vector<std::int64_t> shape;
    std::vector<unsigned char> bytes;

    static HostArray zeros(DType dtype, std::vector<std::int64_t> shape);
    // Floats rounded to the 16-bit dtype (or stored as float32 / int32).
    static HostArray from_floats(DType dtype, std::vector<std::int64_t> shape, const std::vector<float>& values);
    // Standard normal values rounded to the dtype, filled by all hardware threads from `seed`
    // (inputs of a million-token case are billions of elements).
    static HostArray random_normal(DType dtype, std::vector<std::int64_t> shape, std::uint64_t seed);
    static HostArray from_int32(std::vector<std::int64_t> shape, const std::vector<std::int32_t>& values);

    bool empty_shape() const { return shape.empty(); }
    std::int64_t numel() const;
    std::size_t size_bytes() const { return std::size_t(numel()) * std::size_t(dtype_size(dtype)); }
    float at(std::int64_t e) const;  // bf16, fp16 or fp32 element as float
    std::vector<float> to_floats() const;
    const std::int32_t* int32_data() const { return reinterpret_cast<const std::int32_t*>(bytes.data()); }
    // A contiguous view of `data` (this array's storage, or a device copy of it) with this shape.
    Tensor view(void* data, Device device) const;
};

// q, k, v (and dout for a backward) in the compute dtype; cu_seqlens int32 for varlen.
struct Inputs {
    HostArray q, k, v, dout, cu_seqlens_q, cu_seqlens_k;
    bool has_dout() const { return !dout.empty_shape(); }
    bool varlen() const { return !cu_seqlens_q.empty_shape() || !cu_seqlens_k.empty_shape(); }
};

// What forward (out, lse) and backward (dq, dk, dv) write, shaped from the inputs:
// out = q's shape with v's head dim, lse [B, Hq, Sq] (varlen [Hq, Tq]), dq / dk / dv like q / k / v.
// Inputs must have rank 3 or 4.
struct Outputs {
    HostArray out, lse, dq, dk, dv;
    static Outputs shaped_for(const Inputs& in);
};

}  // namespace ccattn::cli
