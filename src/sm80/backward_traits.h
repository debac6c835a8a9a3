// The backward kernel's compile-time description: tile sizes (backward_tiles.h), the three tiled MMAs
// and the shared-memory layout, built from the sm80 building blocks of kernel_traits.h.
#pragma once

#include "ccattn/tensor.h"
#include "sm80/backward_tiles.h"
#include "sm80/kernel_traits.h"

namespace ccattn::sm80 {

template <int kDqk_, int kDv_, DType kDType>
struct BackwardTraits {
    using Element = ElementOf<kDType>;
    static constexpr BackwardTile kTile = backward_tile<kDqk_, kDv_>();
    static constexpr int kDqk = kDqk_, kDv = kDv_;
    static constexpr int kBlockM = kTile.q_tile, kBlockN = kTile.kv_tile;
    static constexpr int kWarps = kTile.warps, kThreads = kWarps * 32;
    static constexpr int kStages = kTile.stages;
    static_assert(kStages == 1 || kStages == 2);

    template <int kWarpsM>
    using Mma = TiledMmaOf<Element, kWarpsM, kWarps / kWarpsM>;
    using MmaSdP = Mma<kTile.atom_m_sdp>;  // S = Q K^T and dP = dO V^T: (q_tile, kv_tile)
    using MmadKV = Mma<kTile.atom_m_dkv>;  // dK = dS^T Q and dV = P^T dO: (kv_tile, D)
    using MmadQ = Mma<kTile.atom_m_dq>;    // dQ = dS K: (q_tile, Dqk)

    // Tiles as stored, and the transposed views that feed ldmatrix.trans (with their unswizzled
    // shapes, which size the register fragments).
    using SmemQ = SmemTile<kBlockM, kDqk>;
    using SmemdO = SmemTile<kBlockM, kDv>;
    using SmemK = SmemTile<kBlockN, kDqk>;
    using SmemV = SmemTile<kBlockN, kDv>;
    using SmemPdS = SmemTile<kBlockM, kBlockN>;
    using SmemQt = SmemTileTransposed<kBlockM, kDqk>;  // (Dqk, q_tile)
    using SmemdOt = SmemTileTransposed<kBlockM, kDv>;  // (Dv, q_tile)
    using SmemKt = SmemTileTransposed<kBlockN, kDqk>;  // (Dqk, kv_tile)
    using SmemPdSt = SmemTileTransposed<kBlockM, kBlockN>;  // (kv_tile, q_tile)
    using ShapeQt = SmemTileTransposedShape<kBlockM, kDqk>;
    using ShapedOt = SmemTileTransposedShape<kBlockM, kDv>;
    using ShapeKt = SmemTileTransposedShape<kBlockN, kDqk>;
    using ShapePdSt = SmemTileTransposedShape<kBlockM, kBlockN>;

    // Shared memory, in elements: Q and dO per stage, then K, V, P, dS.
    static constexpr int kQSize = kBlockM * kDqk, kdOSize = kBlockM * kDv;
    static constexpr int kOffdO = kStages * kQSize;
    static constexpr int kOffK = kOffdO + kStages * kdOSize;
    static constexpr int kOffV = kOffK + kBlockN * kDqk;
    static constexpr int kOffP = kOffV + kBlockN * kDv;
    static constexpr int kOffdS = kOffP + kBlockM * kBlockN;
    static constexpr int kStateOffset = kOffdS + kBlockM * kBlockN;  // CtaState (16-byte aligned)
    static constexpr int kSmemBytes = kStateOffset * int(sizeof(Element)) + kBackwardStateBytes;
    static_assert(kSmemBytes == backward_smem_bytes(kTile, kDqk, kDv));
};

}  // namespace ccattn::sm80
