// Hopper backward: every compile-time choice of one instantiation (element type, head dims): tile
// sizes, warp-group roles and register budgets, the five tiled wgmma, the shared-memory layouts.
//
// A CTA owns kBlockN = 128 keys of one KV head; consumer warp group w owns keys [64 w, 64 w + 64).
// Per q-tile of 64 packed rows the scores are computed transposed (FA3's SdP_swapAB), so that Pᵀ and
// dSᵀ come out of the accumulators in the layout of a register A operand:
//   Sᵀ = K Qᵀ, dPᵀ = V dOᵀ                      (64 keys x 64 rows per warp group, both from smem)
//   dV += Pᵀ dO, dK += dSᵀ Q                     (Pᵀ, dSᵀ from registers; dO, Q read MN-major)
//   dQ = dS K                                    (dSᵀ through smem; warp group w: head-dim half w,
//                                                 added into fp32 rows by bulk reductions from smem)
// At head dim 256 (kSharedP) a warp group's dK and dV over 64 keys would take 256 registers a thread,
// so the CTA owns 64 keys and the warp groups split differently (FA3's d256 split, in our transposed
// form): warp group w computes Sᵀ and dPᵀ of all 64 keys for rows [32 w, 32 w + 32), writes Pᵀ and
// dSᵀ to shared memory, and after the barrier makes head-dim half w of dV and dK from both groups'
// Pᵀ and dSᵀ (shared-memory A operands) and every other 64-column block of dQ.
#pragma once

#include <cstdint>

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/numeric_types.h>

#include "sm80/backward_schedule.h"

namespace ccattn::sm90 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor (the public view type)

// The head dims of the Hopper backward. Every one uses 64-row q-tiles; 128-key CTAs (two consumer
// warp groups of 64 keys: the wgmma M of Sᵀ) but at 256 (64 keys); the host driver gets them as
// sm80::KernelTiles. At 192/128 dK and dV take 160 fp32 registers a consumer thread (sm80's kernel
// halves its kv tile there).
struct BackwardTileSize {
    int dim_qk, dim_v;
};
inline constexpr BackwardTileSize kBackwardTiles[] = {{64, 64}, {128, 128}, {192, 128}, {256, 256}};
constexpr bool has_backward_tile(int dim_qk, int dim_v) {
    for (const BackwardTileSize& t : kBackwardTiles)
        if (t.dim_qk == dim_qk && t.dim_v == dim_v) return true;
    return false;
}

template <class Element_, int kDimQK_, int kDimV_>
struct BackwardTraits {
    using Element = Element_;
    static_assert(cute::is_same_v<Element, cutlass::bfloat16_t> || cute::is_same_v<Element, cutlass::half_t>);
    static_assert(has_backward_tile(kDimQK_, kDimV_));
    static constexpr int kDimQK = kDimQK_;
    static constexpr int kDimV = kDimV_;
    // Pᵀ through shared memory, dK / dV split by head dim (see above): at 256, where dK and dV of 64
    // keys take 128 fp32 registers a thread even when split.
    static constexpr bool kSharedP = kDimQK_ > 192;
    static constexpr int kBlockM = 64;                  // packed query rows per q-tile
    static constexpr int kBlockN = kSharedP ? 64 : 128;  // keys per CTA
    // Q / dO (and their row data) buffers. At 256 one: two would need 256 KB of shared memory.
    static constexpr int kStages = kSharedP ? 1 : 2;

    static constexpr int kWarpGroupThreads = 128;
    static constexpr int kConsumerWarpGroups = 2;
    static constexpr int kConsumerThreads = kConsumerWarpGroups * kWarpGroupThreads;
    static constexpr int kThreads = kConsumerThreads + kWarpGroupThreads;
    // The producer gathers rows with cp.async (GQA-packed rows come from G heads); the consumers
    // hold dK, dV (64 + 64 fp32 a thread at d128) beside the Sᵀ, dPᵀ and dQ accumulators.
    // setmaxnreg moves registers within what the CTA got at launch (168 a thread for 384 threads):
    // asking for more blocks forever.
    static constexpr int kProducerRegisters = 24;
    static constexpr int kConsumerRegisters = 240;
    static_assert(kWarpGroupThreads * (kProducerRegisters + kConsumerWarpGroups * kConsumerRegisters) <=
                  kThreads * (65536 / kThreads / 8 * 8));
    static_assert(kDimQK % 64 == 0 && kDimV % 64 == 0, "SW128 atoms need head dims in multiples of 64");

    // The q-tile's rows go through Sᵀ, dPᵀ, dV and dK in kParts parts of kPartRows: at Dqk 192 dK
    // and dV take 160 fp32 registers a consumer thread, and whole 64-row Sᵀ and dPᵀ (64 more) would
    // leave too few for ptxas to keep the wgmma asynchronous (it serializes them and spills).
    static constexpr int kParts = kDimQK > 128 && !kSharedP ? 2 : 1;
    static constexpr int kPartRows = kBlockM / kParts;

    // (M, N, K) of each product over the whole CTA; AtomLayout splits M (keys) or N (rows of Sᵀ, or
    // head dim).
    using SplitKeys = Layout<Shape<_2, _1, _1>>;
    using SplitHeadDim = Layout<Shape<_1, _2, _1>>;
    using SplitRows = SplitHeadDim;  // Sᵀ's N is the q-tile's rows
    static constexpr int kSRows = kSharedP ? kBlockM / 2 : kPartRows;  // N of one warp group's Sᵀ
    using TiledMmaS = decltype(make_tiled_mma(
        GMMA::ss_op_selector<Element, Element, float, Shape<_64, Int<kSRows>, Int<kDimQK>>>(),
        cute::conditional_t<kSharedP, SplitRows, SplitKeys>{}));
    using TiledMmadP = decltype(make_tiled_mma(
        GMMA::ss_op_selector<Element, Element, float, Shape<_64, Int<kSRows>, Int<kDimV>>>(),
        cute::conditional_t<kSharedP, SplitRows, SplitKeys>{}));
    // dV += Pᵀ dO and dK += dSᵀ Q: A from registers (a warp group's own keys), or with kSharedP from
    // shared memory (all 64 keys, head-dim half w).
    template <int kDim>
    using TiledMmadKV = decltype(make_tiled_mma(
        cute::conditional_t<
            kSharedP,
            decltype(GMMA::ss_op_selector<Element, Element, float, Shape<_64, Int<kDim / 2>, Int<kBlockM>>,
                                          GMMA::Major::K, GMMA::Major::MN>()),
            decltype(GMMA::rs_op_selector<Element, Element, float, Shape<_64, Int<kDim>, Int<kPartRows>>,
                                          GMMA::Major::K, GMMA::Major::MN>())>{},
        cute::conditional_t<kSharedP, SplitHeadDim, SplitKeys>{}));
    using TiledMmadV = TiledMmadKV<kDimV>;
    using TiledMmadK = TiledMmadKV<kDimQK>;
    // dQ: warp group w makes head-dim half w; at Dqk 192 a half (96 columns) is no whole 64-column
    // swizzle atom of Kᵀ, so dQ is made in blocks of 64 columns, each warp group taking every other
    // block (alternating per q-tile), by a one-warp-group product; at 256 too (32 registers a block).
    static constexpr bool kDqByBlocks = kDimQK > 128;
    static constexpr int kDqProductCols = kDqByBlocks ? 64 : kDimQK / 2;  // N of one warp group's dQ product
    using TiledMmadQ = decltype(make_tiled_mma(
        GMMA::ss_op_selector<Element, Element, float, Shape<Int<kBlockM>, Int<kDqProductCols>, Int<kBlockN>>,
                             GMMA::Major::MN, GMMA::Major::MN>(),
        cute::conditional_t<kDqByBlocks, Layout<Shape<_1, _1, _1>>, SplitHeadDim>{}));

    // Shared memory: every tile as it lies in global memory (head dim contiguous), K-major SW128;
    // the transposed views (composition with a row-major index map) read the same bytes MN-major.
    using SmemAtom = GMMA::Layout_K_SW128_Atom<Element>;  // 8 rows x 64 elements
    using SmemLayoutQ = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockM>, Int<kDimQK>, Int<kStages>>{}));
    using SmemLayoutdO = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockM>, Int<kDimV>, Int<kStages>>{}));
    using SmemLayoutK = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockN>, Int<kDimQK>>{}));
    using SmemLayoutV = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockN>, Int<kDimV>>{}));
    // dSᵀ (keys x rows, two buffers): written by the consumers, read as dS (rows x keys, MN-major).
    using SmemLayoutdSt = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockN>, Int<kBlockM>, _2>{}));
    using SmemLayoutPt = SmemLayoutdSt;  // kSharedP: Pᵀ beside dSᵀ, the same two buffers
    template <class Layout, int kRows, int kCols, int kDepth>
    using Transposed = decltype(composition(
        Layout{}, make_layout(Shape<Int<kCols>, Int<kRows>, Int<kDepth>>{},
                              Stride<Int<kRows>, _1, Int<kRows * kCols>>{})));
    using SmemLayoutQt = Transposed<SmemLayoutQ, kBlockM, kDimQK, kStages>;     // (Dqk, rows, stage)
    using SmemLayoutdOt = Transposed<SmemLayoutdO, kBlockM, kDimV, kStages>;    // (Dv, rows, stage)
    using SmemLayoutdS = Transposed<SmemLayoutdSt, kBlockN, kBlockM, 2>;        // (rows, keys, buffer)
    using SmemLayoutKt = decltype(composition(
        SmemLayoutK{}, make_layout(Shape<Int<kDimQK>, Int<kBlockN>>{}, Stride<Int<kBlockN>, _1>{})));  // (Dqk, keys)

    // Per q-tile, written by the producer beside Q and dO: each row's lse * log2(e) (+inf: P = 0 for
    // empty rows and rows past the sequence), D = rowsum(dO O), and the element offset of its dQ row
    // (-1: none): in the dQ output for a direct q-tile (sm80::DirectDq), else in the fp32 accumulator.
    struct RowData {
        float lse2[kBlockM];
        float dsum[kBlockM];
        std::int64_t dq_row[kBlockM];
    };
    struct TileSlot {
        sm80::QTile tile;
        bool valid;  // false: the schedule has ended
    };

    // dQ of a q-tile, staged per consumer warp group (its head-dim half) for the TMA reduce-add into
    // the fp32 accumulator: boxes of 32 columns x kBlockM rows, 128-byte rows swizzled as TMA reads them.
    static constexpr int kDqCols = kDimQK / 2;
    static constexpr int kDqBoxCols = 32;
    static constexpr int kDqBoxes = kDqCols / kDqBoxCols;
    static_assert(kDqCols % kDqBoxCols == 0);
    // Staging boxes per warp group: a half's, or a 64-column block's (kDqByBlocks; both halves' three
    // boxes would take 240 KB of shared memory in all at Dqk 192).
    static constexpr int kDqSlots = kDqByBlocks ? 2 : kDqBoxes;
    // The adders of a q-tile's dQ that take deterministic-mode turns independently (AddOrder::groups):
    // the warp groups' halves, or the blocks. Chunked dK / dV use the first kConsumerWarpGroups.
    static constexpr int kAddGroups = kDqByBlocks ? kDimQK / 64 : kConsumerWarpGroups;

    struct Empty {};
    struct SharedStorage {
        cute::array_aligned<Element, cosize_v<SmemLayoutQ>, 1024> q;
        cute::array_aligned<Element, cosize_v<SmemLayoutdO>, 1024> dout;
        cute::array_aligned<Element, cosize_v<SmemLayoutK>, 1024> k;
        cute::array_aligned<Element, cosize_v<SmemLayoutV>, 1024> v;
        cute::array_aligned<Element, cosize_v<SmemLayoutdSt>, 1024> ds;
        alignas(1024) float dq[kConsumerWarpGroups][kDqSlots][kBlockM][kDqBoxCols];
        RowData rows[kStages];
        TileSlot slots[kStages];
        sm80::QTileSchedule schedule;  // advanced by the producer's first thread
        cutlass::arch::ClusterBarrier::ValueType full[kStages];   // producer -> consumers: stage loaded
        cutlass::arch::ClusterBarrier::ValueType empty[kStages];  // consumers -> producer: stage free
        cutlass::arch::ClusterBarrier::ValueType kv_full;         // K and V loaded
        // kSharedP: Pᵀ (last: elsewhere the empty member costs no alignment padding)
        cute::conditional_t<kSharedP, cute::array_aligned<Element, cosize_v<SmemLayoutPt>, 1024>, Empty> p;
    };
    static constexpr int kSharedBytes = int(sizeof(SharedStorage));
    static_assert(kSharedBytes <= 227 * 1024, "shared memory over the sm90 per-block limit");
};

}  // namespace ccattn::sm90
