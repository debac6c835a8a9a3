// Hopper forward: every compile-time choice of one kernel instantiation (element type, head dims)
// in one place: tile sizes, warp-group roles, the wgmma tiled MMAs, shared-memory layouts and the
// TMA copy types.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/numeric_types.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "sm90/tile_queue.h"
#include "sm90/tile_sizes.h"
#include "sm90/work_tile.h"

namespace ccattn::sm90 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor (the public view type)

template <class Element_, int kDimQK_, int kDimV_>
struct KernelTraits {
    using Element = Element_;
    static_assert(cute::is_same_v<Element, cutlass::bfloat16_t> || cute::is_same_v<Element, cutlass::half_t>);

    static constexpr TileSize kTile = tile_size(kDimQK_, kDimV_);
    static_assert(kTile.block_m > 0, "no Hopper tile size for these head dims (see tile_sizes.h)");
    static constexpr int kDimQK = kDimQK_;
    static constexpr int kDimV = kDimV_;
    static constexpr int kBlockM = kTile.block_m;  // packed query rows per work tile
    static constexpr int kBlockN = kTile.block_n;  // keys per kv tile
    static constexpr int kStages = kTile.stages;   // K and V pipeline depth
    static constexpr bool kPingPong = kTile.ping_pong;

    // Warp group 0 loads K/V with TMA; warp groups 1.. each own 64 rows of the q-tile.
    static constexpr int kWarpGroupThreads = 128;
    static constexpr int kRowsPerWarpGroup = 64;
    static constexpr int kConsumerWarpGroups = kBlockM / kRowsPerWarpGroup;
    static constexpr int kConsumerThreads = kConsumerWarpGroups * kWarpGroupThreads;
    static constexpr int kThreads = kConsumerThreads + kWarpGroupThreads;
    static_assert(kBlockM % kRowsPerWarpGroup == 0 && (kConsumerWarpGroups == 2 || kConsumerWarpGroups == 3));
    // setmaxnreg budgets: the producer keeps only what TMA issue needs, consumers take the rest of
    // the 64K register file. With two consumer groups the producer's per-tile set-up (WorkInfo, the
    // Q boxes) spilled ~530 instructions at 24 registers (bench/NOTES.md v23); its spills cost the
    // one-kv-tile shapes most, so at Dqk <= 128, whose consumers fit 224 without spills, it gets 56
    // (v32); at Dqk 192 / 256 the consumers need 232 and the producer keeps 40.
    static constexpr int kProducerRegisters = kConsumerWarpGroups == 3 ? 32 : kDimQK <= 128 ? 56 : 40;
    static constexpr int kConsumerRegisters = kConsumerWarpGroups == 3 ? 160 : kDimQK <= 128 ? 224 : 232;
    static_assert(kWarpGroupThreads * (kProducerRegisters + kConsumerWarpGroups * kConsumerRegisters) <= 65536);

    // SW128 swizzle atoms need every row (K-major) or column (MN-major) extent to be a multiple of 64.
    static_assert(kDimQK % 64 == 0 && kDimV % 64 == 0, "head dims must be multiples of 64");
    static_assert(kBlockN % 16 == 0, "kv tile must be a multiple of the wgmma K (16)");

    // One warp group's matmuls: S (64 x kBlockN) = Q Kᵀ with both operands in shared memory,
    // O (64 x Dv) += P V with P from registers (the converted S accumulator).
    using TileShapeQK = Shape<Int<kRowsPerWarpGroup>, Int<kBlockN>, Int<kDimQK>>;  // (M, N, K)
    using TileShapePV = Shape<Int<kRowsPerWarpGroup>, Int<kDimV>, Int<kBlockN>>;   // (M, N, K)
    using TiledMmaQK = decltype(make_tiled_mma(GMMA::ss_op_selector<Element, Element, float, TileShapeQK>()));
    using TiledMmaPV = decltype(make_tiled_mma(
        GMMA::rs_op_selector<Element, Element, float, TileShapePV, GMMA::Major::K, GMMA::Major::MN>()));
    static_assert(size(TiledMmaQK{}) == kWarpGroupThreads && size(TiledMmaPV{}) == kWarpGroupThreads);

    // Shared memory. Q is K-major (head dim contiguous), one 64-row slice per consumer warp group,
    // column blocks of 64 one after the other (as TMA boxes of 64 columns land); K is K-major; V is
    // stored as it lies in memory (head dim contiguous), which is MN-major for the P V matmul
    // (B = Vᵀ, N = head dim). O leaves from registers (epilogue.h).
    using SmemAtomK = GMMA::Layout_K_SW128_Atom<Element>;    // 8 rows x 64 elements
    using SmemAtomMN = GMMA::Layout_MN_SW128_Atom<Element>;  // 64 elements x 8 columns
    using SmemLayoutQ = decltype(tile_to_shape(SmemAtomK{}, Shape<Int<kRowsPerWarpGroup>, Int<kDimQK>>{}));  // (64, Dqk)
    using SmemLayoutK = decltype(tile_to_shape(
        SmemAtomK{}, Shape<Int<kBlockN>, Int<kDimQK>, Int<kStages>>{}));  // (kBlockN, Dqk, stage)
    using SmemLayoutV = decltype(tile_to_shape(
        SmemAtomMN{}, Shape<Int<kDimV>, Int<kBlockN>, Int<kStages>>{}, Step<_2, _1, _3>{}));  // (Dv, kBlockN, stage)
    static constexpr int kSmemQElements = cosize_v<SmemLayoutQ>;  // one warp group's slice
    static_assert(kSmemQElements * sizeof(Element) % 1024 == 0);

    // Global tensors as TMA sees them: K (rows, Dqk, kv heads, batch) and V viewed transposed as
    // (Dv, rows, kv heads, batch), so that its tile matches SmemLayoutV. Varlen uses batch = 1.
    using ShapeKV = Shape<int32_t, int32_t, int32_t, int32_t>;
    using StrideK = Stride<int64_t, _1, int64_t, int64_t>;
    using StrideVt = Stride<_1, int64_t, int64_t, int64_t>;
    using TmaK = decltype(make_tma_copy(
        SM90_TMA_LOAD{}, make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), ShapeKV{}, StrideK{}),
        take<0, 2>(SmemLayoutK{}), Shape<Int<kBlockN>, Int<kDimQK>>{}, _1{}));
    using TmaV = decltype(make_tma_copy(
        SM90_TMA_LOAD{}, make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), ShapeKV{}, StrideVt{}),
        take<0, 2>(SmemLayoutV{}), Shape<Int<kDimV>, Int<kBlockN>>{}, _1{}));
    static constexpr uint32_t kTmaBytesQ = uint32_t(kSmemQElements * sizeof(Element));  // one warp group's slice
    static constexpr uint32_t kTmaBytesK = uint32_t(size(take<0, 2>(SmemLayoutK{})) * sizeof(Element));
    static constexpr uint32_t kTmaBytesV = uint32_t(size(take<0, 2>(SmemLayoutV{})) * sizeof(Element));

    using Pipeline = cutlass::PipelineTmaAsync<kStages>;
    using PipelineState = typename Pipeline::PipelineState;
    // The consumers hold an entry for their whole tile; four let the producer describe the tiles its
    // K / V loads run ahead to (at most kStages steps).
    using TileQueue = sm90::TileQueue<TileEntry<kBlockM, kBlockN>, 4, kConsumerThreads>;

    // Every buffer starts on a 1024-byte boundary: the SW128 pattern repeats every 8 rows of 128 B
    // and TMA and wgmma apply it to absolute shared-memory addresses.
    struct SharedStorage {
        cute::array_aligned<Element, kSmemQElements * kConsumerWarpGroups, 1024> q;  // one slice per warp group
        cute::array_aligned<Element, cosize_v<SmemLayoutK>, 1024> k;
        cute::array_aligned<Element, cosize_v<SmemLayoutV>, 1024> v;
        typename Pipeline::SharedStorage pipeline_k;
        typename Pipeline::SharedStorage pipeline_v;
        // Q by TMA (KernelParams::q_by_tma): a warp group's slice has landed / its last S has read it.
        cutlass::arch::ClusterBarrier::ValueType q_full[kConsumerWarpGroups];
        cutlass::arch::ClusterBarrier::ValueType q_empty[kConsumerWarpGroups];
        typename TileQueue::Storage tiles;  // the work tiles, from the producer to the consumers
    };
    static constexpr int kSharedBytes = int(sizeof(SharedStorage));
    static_assert(kSharedBytes <= 227 * 1024, "shared memory over the sm90 per-block limit");
};

}  // namespace ccattn::sm90
