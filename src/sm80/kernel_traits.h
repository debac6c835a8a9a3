// CuTe building blocks of the sm80 kernels (mma.sync m16n8k16, ldmatrix, swizzled shared memory), and
// the forward kernel's traits. Shared by the forward and backward kernels.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/numeric_types.h>

#include "ccattn/tensor.h"
#include "sm80/forward_tiles.h"

namespace ccattn::sm80 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor

// The CuTe element type of a 16-bit DType.
template <DType kDType>
using ElementOf = std::conditional_t<kDType == DType::bf16, cutlass::bfloat16_t, cutlass::half_t>;

// m16n8k16 tensor-core MMA with fp32 accumulation, both operands K-major ("TN").
template <class Element>
using MmaAtomOf = std::conditional_t<std::is_same_v<Element, cutlass::bfloat16_t>,
                                     MMA_Atom<SM80_16x8x16_F32BF16BF16F32_TN>, MMA_Atom<SM80_16x8x16_F32F16F16F32_TN>>;

// kWarpsM x kWarpsN warps; each warp step covers 16 rows x 16 columns (two n8 atoms, so that one
// ldmatrix.x4 feeds the B operand) x 16 of K.
template <class Element, int kWarpsM, int kWarpsN = 1>
using TiledMmaOf = TiledMMA<MmaAtomOf<Element>, Layout<Shape<Int<kWarpsM>, Int<kWarpsN>, _1>>,
                            Tile<Int<16 * kWarpsM>, Int<16 * kWarpsN>, _16>>;

// Shared-memory layout of a [kRows, kDim] tile with kDim contiguous, built from 8 x 64 atoms (one
// 128-byte line per row) swizzled so that ldmatrix reads and 16-byte cp.async writes are free of bank
// conflicts. kDim must be a multiple of 64.
template <int kRows, int kDim>
using SmemTile = decltype(tile_to_shape(composition(Swizzle<3, 3, 3>{}, Layout<Shape<_8, _64>, Stride<_64, _1>>{}),
                                        Shape<Int<kRows>, Int<kDim>>{}));

// The same bytes read as the transposed tile [kDim, kRows] (e.g. V as the B operand of P V).
template <int kRows, int kDim>
using SmemTileTransposed =
    decltype(composition(SmemTile<kRows, kDim>{}, make_layout(Shape<Int<kDim>, Int<kRows>>{}, GenRowMajor{})));

// Its unswizzled shape, for sizing register fragments.
template <int kRows, int kDim>
using SmemTileTransposedShape = decltype(get_nonswizzle_portion(SmemTileTransposed<kRows, kDim>{}));

// Shared -> register loads of MMA operands: ldmatrix.x4, and its transposing form for operands stored
// the other way round.
template <class Element>
using LdsmCopy = Copy_Atom<SM75_U32x4_LDSM_N, Element>;
template <class Element>
using LdsmCopyTransposed = Copy_Atom<SM75_U16x8_LDSM_T, Element>;

// Accumulator -> shared memory stores (two adjacent elements per access).
template <class Element>
using AccumStoreCopy = Copy_Atom<AutoVectorizingCopyWithAssumedAlignment<128>, Element>;

template <int kDqk, int kDv, DType kDType>
struct ForwardTraits {
    using Element = ElementOf<kDType>;
    static constexpr int kDimQK = kDqk;
    static constexpr int kDimV = kDv;
    static constexpr ForwardTile kTile = forward_tile<kDqk, kDv>();
    static constexpr int kTileM = kTile.tile_m;
    static constexpr int kTileN = kTile.tile_n;
    static constexpr int kWarps = kTile.warps;
    static constexpr int kThreads = 32 * kWarps;
    // Each thread holds 2 rows of every 16-row MMA slice of its warp.
    static constexpr int kRowsPerThread = 2 * kTileM / (16 * kWarps);
    static_assert(kTileM % (16 * kWarps) == 0 && kTileN % 16 == 0);
    static_assert(kDqk % 64 == 0 && kDv % 64 == 0, "SmemTile needs multiples of 64");
    static_assert(kDv <= kDqk, "the output tile reuses the Q tile's shared memory");

    using TiledMma = TiledMmaOf<Element, kWarps>;
    using SmemLayoutQ = SmemTile<kTileM, kDqk>;  // also O, [kTileM, kDv], in the same bytes
    using SmemLayoutO = SmemTile<kTileM, kDv>;
    using SmemLayoutK = SmemTile<kTileN, kDqk>;
    using SmemLayoutV = SmemTile<kTileN, kDv>;
    using SmemLayoutVt = SmemTileTransposed<kTileN, kDv>;
    using SmemShapeVt = SmemTileTransposedShape<kTileN, kDv>;

    static constexpr int kSmemQ = kTileM * kDqk;  // elements
    static constexpr int kSmemK = kTileN * kDqk;
    static constexpr int kSmemV = kTileN * kDv;
    static constexpr int kSmemBytes = (kSmemQ + kSmemK + kSmemV) * int(sizeof(Element));
};

}  // namespace ccattn::sm80
