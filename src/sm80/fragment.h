// Views of m16n8 MMA accumulator fragments: as (rows, cols) for row-wise softmax and masking, and as
// the A operand of a following MMA; conversion to 16-bit.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/array.h>
#include <cutlass/numeric_conversion.h>

#include "gpu/quad_reduce.h"

namespace ccattn::sm80 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor

// An accumulator layout (4, MMA_M, MMA_N) as (rows (2, MMA_M), cols (2, MMA_N)). In an m16n8 C
// fragment a thread's values 0,1 sit on row lane/4 and values 2,3 on row lane/4 + 8, at columns
// 2 * (lane % 4) + {0, 1}: row r = half + 2 * m, col c = pair + 2 * n.
template <class Layout>
CUTE_HOST_DEVICE auto rowcol_layout(Layout acc) {
    static_assert(decltype(size<0>(acc))::value == 4 && decltype(rank(acc))::value == 3);
    auto l = logical_divide(acc, Shape<_2>{});  // ((2, 2), MMA_M, MMA_N)
    return make_layout(make_layout(get<0, 1>(l), get<1>(l)), make_layout(get<0, 0>(l), get<2>(l)));
}

// The (rows, cols) view of an accumulator, or of its coordinate tensor (partition_C of an identity
// tensor): element (r, c) of both views is the same matrix entry.
template <class Tensor>
CUTE_HOST_DEVICE auto rowcol(Tensor&& t) {
    return make_tensor(t.data(), rowcol_layout(t.layout()));
}

// An m16n8k16 accumulator (4, MMA_M, MMA_N) re-read as A operand ((4, 2), MMA_M, MMA_N / 2): the C
// fragments of two adjacent n8 tiles are exactly the A fragment of one k16 step.
template <class Layout>
CUTE_HOST_DEVICE auto acc_as_a_layout(Layout acc) {
    static_assert(decltype(size<0>(acc))::value == 4 && decltype(rank(acc))::value == 3);
    auto l = logical_divide(acc, Shape<Underscore, Underscore, _2>{});  // (4, MMA_M, (2, MMA_N / 2))
    return make_layout(make_layout(get<0>(l), get<2, 0>(l)), get<1>(l), get<2, 1>(l));
}

// Element-wise conversion of a register fragment (e.g. fp32 -> bf16, round to nearest).
template <class To, class Engine, class Layout>
__device__ __forceinline__ auto convert_fragment(const Tensor<Engine, Layout>& t) {
    using From = typename Engine::value_type;
    constexpr int kN = decltype(size(t))::value;
    cutlass::NumericArrayConverter<To, From, kN> convert;
    auto converted = convert(*reinterpret_cast<const cutlass::Array<From, kN>*>(t.data()));
    Tensor out = make_tensor<To>(t.layout());
    *reinterpret_cast<cutlass::Array<To, kN>*>(out.data()) = converted;
    return out;
}

// The quad reductions are shared with the wgmma fragments of src/sm90.
using gpu::quad_max;
using gpu::quad_sum;

}  // namespace ccattn::sm80
