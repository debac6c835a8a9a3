// Views of an sm90 wgmma accumulator fragment. One thread of a warp group holds, for a 64 x N
// accumulator, the values ((2, 2, N/8), MMA_M, MMA_N): pairs of adjacent columns (mode 0,0), the
// rows r and r + 8 (mode 0,1), and every 8th column pair (mode 0,2). The views below regroup these
// values without moving them; tests/cuda/test_sm90_forward.cu checks them against CuTe's own
// partitions for every thread.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/numeric_conversion.h>

namespace ccattn::sm90 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor (the public view type)

// ((2, 2, V), MMA_M, MMA_N) -> (rows = (2, MMA_M), cols = (2, V, MMA_N)): row-wise softmax and masking.
template <class Layout>
CUTE_HOST_DEVICE constexpr auto rowcol_layout(Layout acc) {
    static_assert(decltype(rank(acc))::value == 3 && decltype(rank<0>(acc))::value == 3);
    static_assert(decltype(size<0, 0>(acc))::value == 2 && decltype(size<0, 1>(acc))::value == 2);
    return make_layout(make_layout(get<0, 1>(acc), get<1>(acc)),
                       make_layout(get<0, 0>(acc), get<0, 2>(acc), get<2>(acc)));
}

template <class Tensor>
CUTE_HOST_DEVICE auto rowcol_view(Tensor&& t) {
    return make_tensor(t.data(), rowcol_layout(t.layout()));
}

// ((2, 2, N/8), MMA_M, MMA_N) -> ((2, 2, 2), MMA_M, (N/16, MMA_N)): the S accumulator as the
// register A operand of the next wgmma (K = N in steps of 16 columns).
template <class Layout>
CUTE_HOST_DEVICE constexpr auto a_operand_layout(Layout acc) {
    static_assert(decltype(rank(acc))::value == 3 && decltype(rank<0>(acc))::value == 3);
    static_assert(decltype(size<0, 2>(acc))::value % 2 == 0);
    auto v = logical_divide(get<0>(acc), Shape<Underscore, Underscore, _2>{});  // (2, 2, (2, N/16))
    return make_layout(make_layout(get<0>(v), get<1>(v), get<2, 0>(v)), get<1>(acc),
                       make_layout(get<2, 1>(v), get<2>(acc)));
}

// Element-wise conversion between fragments that share one storage order (src's layout and
// dst's are views of the same register indices).
template <class SrcTensor, class DstTensor>
CUTE_DEVICE void convert_fragment(SrcTensor const& src, DstTensor& dst) {
    using From = typename SrcTensor::value_type;
    using To = typename DstTensor::value_type;
    constexpr int kSize = decltype(size(src))::value;
    static_assert(decltype(size(dst))::value == kSize && decltype(cosize(dst.layout()))::value == kSize);
    cutlass::NumericArrayConverter<To, From, kSize> op;
    *reinterpret_cast<cutlass::Array<To, kSize>*>(dst.data()) =
        op(*reinterpret_cast<cutlass::Array<From, kSize> const*>(src.data()));
}

}  // namespace ccattn::sm90
