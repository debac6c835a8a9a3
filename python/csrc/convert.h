// Torch tensors as ccattn views, and ccattn errors as Python exceptions.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <string>

#include "ccattn/ccattn.h"

namespace ccattn::torch_ext {

// A view of t for the library, or a ValueError naming the argument for a dtype, device or rank the
// library has no words for.
inline Tensor view(const at::Tensor& t, const char* name) {
    Tensor v;
    switch (t.scalar_type()) {
        case at::kBFloat16: v.dtype = DType::bf16; break;
        case at::kHalf: v.dtype = DType::fp16; break;
        case at::kFloat: v.dtype = DType::fp32; break;
        case at::kInt: v.dtype = DType::int32; break;
        case at::kLong: v.dtype = DType::int64; break;
        default:
            TORCH_CHECK_VALUE(false, "ccattn: argument '", name, "': dtype ", t.scalar_type(),
                              " is not supported (q, k, v: bfloat16 or float16; cu_seqlens: int32; band: int32 or int64)");
    }
    TORCH_CHECK_VALUE(t.is_cpu() || t.is_cuda(), "ccattn: argument '", name, "': must be a CPU or CUDA tensor, got ",
                      t.device());
    TORCH_CHECK_VALUE(t.dim() >= 1 && t.dim() <= Tensor::kMaxRank, "ccattn: argument '", name,
                      "': rank must be 1 to 4, got shape ", t.sizes());
    v.device = t.is_cuda() ? Device::cuda : Device::cpu;
    v.rank = int(t.dim());
    for (int d = 0; d < v.rank; ++d) {
        v.shape[d] = t.size(d);
        v.stride[d] = t.stride(d);
    }
    // The library reads a null pointer as an absent argument; a tensor with no elements is a present
    // one (an empty batch, no compressed blocks yet) whose memory is never touched.
    alignas(16) static char no_elements[16];
    v.data = t.numel() == 0 ? static_cast<void*>(no_elements) : t.data_ptr();
    return v;
}

// The library names arguments as the C++ API spells them ("mask.compress_factor"); Python callers
// know them by their keyword ("compress_factor"; band tensors: "band[0]" and "band[1]").
inline std::string python_name(const std::string& argument) {
    if (argument == "mask.lo") return "band[0]";
    if (argument == "mask.hi") return "band[1]";
    const std::string prefix = "mask.";
    return argument.compare(0, prefix.size(), prefix) == 0 ? argument.substr(prefix.size()) : argument;
}

// Raises the exception that matches the status: ValueError for bad arguments, NotImplementedError
// for unsupported ones, RuntimeError otherwise.
inline void check(const Status& s, const char* op) {
    if (s.ok()) return;
    const std::string where = s.argument.empty() ? "" : "argument '" + python_name(s.argument) + "': ";
    TORCH_CHECK_VALUE(s.code != Code::invalid_argument, "ccattn.", op, ": ", where, s.message);
    TORCH_CHECK_NOT_IMPLEMENTED(s.code != Code::unsupported, "ccattn.", op, ": ", where, s.message);
    TORCH_CHECK(false, "ccattn.", op, ": ", where, s.message);
}

}  // namespace ccattn::torch_ext
