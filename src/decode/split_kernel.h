// The split-KV decode kernel (flash-decoding; mma.sync, runs on sm80 and later) and its launcher.
//
// One warp-sized CTA per (q-tile of 16 packed rows, split, head slot, sequence). GQA packing as in the
// forward: the slot is a KV head and packed row pr is query pr / G of head slot * G + pr % G, so a
// decode step of G query heads per KV head is G rows of one tile; block-sparse masks run unpacked
// (slot = query head: their lists are per query head). The CTA takes split s's share of the key tiles
// its rows visit (split_schedule.h) and runs the online softmax over them with
// kStages K/V tiles in flight (16-byte cp.async; keys of a paged cache found through the page table row
// by row). It writes its fp32 output, normalized within the split, and its lse to the workspace;
// combine_kernel.h merges the splits.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include <cute/tensor.hpp>

#include "ccattn/mask.h"
#include "core/band.h"
#include "core/band_source.h"
#include "core/params.h"
#include "core/schedule.h"
#include "cuda/cuda_status.h"
#include "decode/split_schedule.h"
#include "decode/split_work.h"
#include "decode/tiles.h"
#include "gpu/register_mask.h"
#include "sm80/copy.h"
#include "sm80/fragment.h"
#include "sm80/gemm.h"
#include "sm80/kernel_traits.h"
#include "sm80/softmax.h"

namespace ccattn::decode {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor

template <int kDqk, int kDv, DType kDType>
struct SplitTraits {
    using Element = sm80::ElementOf<kDType>;
    static constexpr DecodeTile kTile = decode_tile<kDqk, kDv>();
    static constexpr int kTileN = kTile.tile_n;
    static constexpr int kStages = kTile.stages;
    static constexpr int kDimV = kDv;
    static constexpr int kSmemBytes = smem_bytes(kTile, kDqk, kDv);

    using TiledMma = sm80::TiledMmaOf<Element, 1>;
    using SmemLayoutQ = sm80::SmemTile<kTileM, kDqk>;
    using SmemLayoutK = sm80::SmemTile<kTileN, kDqk>;
    using SmemLayoutV = sm80::SmemTile<kTileN, kDv>;
    using SmemLayoutVt = sm80::SmemTileTransposed<kTileN, kDv>;
    using SmemShapeVt = sm80::SmemTileTransposedShape<kTileN, kDv>;
    static constexpr int kSmemQ = kTileM * kDqk;  // elements
    static constexpr int kSmemK = kTileN * kDqk;
    static constexpr int kSmemV = kTileN * kDv;
};

// The CTA's rows: tile row r is packed row m0 + r of head slot `slot` of sequence b.
struct SplitCta {
    int b = 0, slot = 0, kv_head = 0, split = 0, pack = 1;
    std::int64_t m0 = 0, packed_rows = 0;
    core::Sequence seq;

    __device__ static SplitCta of_block(const core::AttnParams& p, const SplitWork& w) {
        SplitCta c;
        c.split = blockIdx.x / w.m_tiles;
        c.m0 = std::int64_t(blockIdx.x % w.m_tiles) * kTileM;
        c.slot = blockIdx.y;
        c.b = blockIdx.z;
        c.pack = p.mask_kind == MaskKind::block_sparse ? 1 : p.group;
        c.kv_head = c.slot * c.pack / p.group;
        c.seq = core::sequence(p, c.b);
        c.packed_rows = c.seq.seqlen_q * c.pack;
        return c;
    }
    __device__ bool valid(int r) const { return m0 + r < packed_rows; }
    __device__ std::int64_t query(int r) const { return std::uint32_t(m0 + r) / std::uint32_t(pack); }
    __device__ int head(int r) const { return slot * pack + int(std::uint32_t(m0 + r) % std::uint32_t(pack)); }
};

template <class T>
__global__ void __launch_bounds__(kThreads, 1) split_kernel(const __grid_constant__ core::AttnParams p, const SplitWork w) {
    using Element = typename T::Element;
    constexpr int kN = T::kTileN, kStages = T::kStages, kRows = 2;
    extern __shared__ __align__(128) unsigned char smem[];
    const int tid = threadIdx.x;

    const SplitCta cta = SplitCta::of_block(p, w);
    if (cta.m0 >= cta.packed_rows) return;  // varlen: beyond this sequence; the combine reads no such row
    const int seqlen_k = int(cta.seq.seqlen_k);  // < 2^31 (checked on the host)
    const core::SequenceBand band = core::sequence_band(p, cta.b, cta.seq);  // built-in or band tensors
    const bool per_element = p.mask_kind == MaskKind::mask_mod || p.mask_kind == MaskKind::block_sparse;

    // This split's share of the visited tiles: an equal contiguous chunk (the last ones may be empty).
    const SplitSchedule sched =
        p.mask_kind == MaskKind::block_sparse
            ? SplitSchedule::sparse(p, cta.b, cta.slot, cta.m0 / p.sparse_tile_m, seqlen_k, kN)
        : per_element ? SplitSchedule::dense(core::make_range(0, core::num_tiles(seqlen_k, kN), 0, 0), true, seqlen_k, kN)
                      : SplitSchedule::dense(core::kv_tile_range(band, core::query_span(cta.m0 / kTileM, kTileM, cta.pack,
                                                                                       cta.seq.seqlen_q), kN),
                                             false, seqlen_k, kN);
    const int chunk = int(core::ceil_div(sched.count(), w.splits));
    const int k_begin = int(core::min(sched.count(), std::int64_t(cta.split) * chunk));
    const int count = int(core::min(sched.count(), std::int64_t(k_begin) + chunk)) - k_begin;

    Tensor sQ = make_tensor(make_smem_ptr(reinterpret_cast<Element*>(smem)), typename T::SmemLayoutQ{});  // (16, Dqk)
    Element* const stages = reinterpret_cast<Element*>(smem) + int(T::kSmemQ);
    auto sK = [&](int s) {  // (N, Dqk)
        return make_tensor(make_smem_ptr(stages + s * (T::kSmemK + T::kSmemV)), typename T::SmemLayoutK{});
    };
    auto sV_base = [&](int s) { return make_smem_ptr(stages + s * (T::kSmemK + T::kSmemV) + T::kSmemK); };

    const auto* q = static_cast<const Element*>(p.q);
    const auto* k = static_cast<const Element*>(p.k);
    const auto* v = static_cast<const Element*>(p.v);
    // Keys outside [0, seqlen_k) are zero-filled: a masked key's V row must be finite (0 * NaN).
    auto load_tile = [&](int stage, int t) {
        auto rows = [&](const Element* base, core::Strides st) {
            return [&, base, st](int r) -> const Element* {
                const int j = t * kN + r;
                return j < seqlen_k ? base + core::key_offset(p, st, cta.b, cta.seq, j, cta.kv_head) : nullptr;
            };
        };
        Tensor k_tile = sK(stage);
        Tensor v_tile = make_tensor(sV_base(stage), typename T::SmemLayoutV{});
        sm80::load_rows_async<kThreads>(k_tile, tid, rows(k, p.k_strides));
        sm80::load_rows_async<kThreads>(v_tile, tid, rows(v, p.v_strides));
    };

    typename T::TiledMma mma;
    auto thr_mma = mma.get_thread_slice(tid);
    Tensor tSrQ = thr_mma.partition_fragment_A(sQ);                                              // (MMA, 1, Dqk/16)
    Tensor tSrK = thr_mma.partition_fragment_B(sK(0));                                           // (MMA, N/8, Dqk/16)
    Tensor tOrVt = thr_mma.partition_fragment_B(make_tensor(sV_base(0), typename T::SmemShapeVt{}));  // (MMA, Dv/8, N/16)
    Tensor acc_o = partition_fragment_C(mma, Shape<Int<kTileM>, Int<T::kDimV>>{});              // (MMA, 1, Dv/8)
    auto copy_q = make_tiled_copy_A(sm80::LdsmCopy<Element>{}, mma);
    auto copy_k = make_tiled_copy_B(sm80::LdsmCopy<Element>{}, mma);
    auto copy_v = make_tiled_copy_B(sm80::LdsmCopyTransposed<Element>{}, mma);
    Tensor tSsQ = copy_q.get_thread_slice(tid).partition_S(sQ);  // (CPY, 1, Dqk/16)

    Tensor tScS = thr_mma.partition_C(make_identity_tensor(Shape<Int<kTileM>, Int<kN>>{}));  // (MMA, 1, N/8)
    auto coord = sm80::rowcol(tScS);
    static_assert(decltype(size<0>(coord))::value == kRows);

    // Visible keys [lo, hi) of each row; seen: a visible key inside this split's tiles (a row whose
    // keys all fall in other splits is empty here: lse -inf, o 0, so the combine gives it no weight).
    // The band's tiles are contiguous, so that is its key range; block-sparse rows learn it per tile.
    const int key_lo = count > 0 ? sched.tile(k_begin) * kN : 0;
    const int key_hi = count > 0 ? (sched.tile(k_begin + count - 1) + 1) * kN : 0;
    int lo[kRows], hi[kRows];
    bool seen[kRows];
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
        const int row = get<0>(coord(r, 0));
        lo[r] = cta.valid(row) ? int(band.lo(cta.query(row))) : 0;
        hi[r] = cta.valid(row) ? int(band.hi(cta.query(row))) : 0;
        seen[r] = !sched.sparse() && (lo[r] > key_lo ? lo[r] : key_lo) < (hi[r] < key_hi ? hi[r] : key_hi);
    }

    sm80::OnlineSoftmax<kRows> softmax;
    softmax.reset();
    clear(acc_o);

    // Prologue: Q with the first tile, then kStages - 2 more; one commit group per tile, empty or not,
    // so that cp_async_wait<kStages - 2> always means "tile k has landed".
    if (count > 0) {
        sm80::load_rows_async<kThreads>(sQ, tid, [&](int r) -> const Element* {
            return cta.valid(r) ? q + core::offset(p.q_strides, cta.b, cta.seq.row_q, cta.query(r), cta.head(r)) : nullptr;
        });
    }
    CUTE_UNROLL
    for (int s = 0; s < kStages - 1; ++s) {
        if (s < count) load_tile(s, sched.tile(k_begin + s));
        cp_async_fence();
    }

    // One loop body with a runtime mask flag: a step lambda called for masked and unmasked tiles was not
    // inlined at every head dim (ptxas passed the accumulators through a 1.8 KB stack frame).
    for (int kk = 0; kk < count; ++kk) {
        const int t = sched.tile(k_begin + kk), stage = kk % kStages;
        const bool masked = sched.masked(k_begin + kk, t);
        cp_async_wait<kStages - 2>();
        __syncthreads();  // tile kk landed; the stage refilled below was last read in step kk - 1
        if (kk + kStages - 1 < count) load_tile((kk + kStages - 1) % kStages, sched.tile(k_begin + kk + kStages - 1));
        cp_async_fence();

        Tensor k_tile = sK(stage);
        Tensor tSsK = copy_k.get_thread_slice(tid).partition_S(k_tile);  // (CPY, N/16, Dqk/16)
        Tensor acc_s = partition_fragment_C(mma, Shape<Int<kTileM>, Int<kN>>{});  // (MMA, 1, N/8)
        clear(acc_s);
        sm80::gemm_ss(acc_s, tSrQ, tSrK, tSsQ, tSsK, mma, copy_q, copy_k, tid);
        CUTE_UNROLL
        for (int i = 0; i < size(acc_s); ++i) acc_s(i) *= p.scale_log2;
        auto s = sm80::rowcol(acc_s);
        const int n0 = t * kN;
        if (!masked) {
            CUTE_UNROLL
            for (int r = 0; r < kRows; ++r) seen[r] = true;  // a full tile: every key visible
        } else if (!per_element) {
            gpu::mask_band(s, coord, lo, hi, n0);
        } else {
            const gpu::ElementBand visible(band.formula);
            gpu::mask_elements(s, coord, [&](int r, int col) {
                const int row = get<0>(coord(r, 0));
                const bool vis = cta.valid(row) && visible(cta.query(row), std::int64_t(n0) + col);
                seen[r] = seen[r] || vis;
                return vis;
            });
        }
        auto o = sm80::rowcol(acc_o);
        softmax.template update<true>(s, o);  // a masked row may have no visible key yet
        Tensor rP = sm80::convert_fragment<Element>(acc_s);
        Tensor tOrP = make_tensor(rP.data(), sm80::acc_as_a_layout(rP.layout()));  // ((4, 2), 1, N/16)
        Tensor sVt = make_tensor(sV_base(stage), typename T::SmemLayoutVt{});      // (Dv, N)
        Tensor tOsVt = copy_v.get_thread_slice(tid).partition_S(sVt);
        sm80::gemm_rs(acc_o, tOrP, tOrVt, tOsVt, mma, copy_v, tid);
    }
    cp_async_wait<0>();  // no copy outlives the CTA

    // Epilogue: normalized fp32 rows and lse straight from the accumulators (two adjacent columns per store).
    float lse[kRows];
    auto o = sm80::rowcol(acc_o);
    softmax.finalize(o, lse, seen);
    Tensor tOcO = thr_mma.partition_C(make_identity_tensor(Shape<Int<kTileM>, Int<T::kDimV>>{}));
    auto ocoord = sm80::rowcol(tOcO);
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
        const int row = get<0>(ocoord(r, 0));
        if (!cta.valid(row)) continue;
        const std::int64_t at = w.index(p, cta.split, cta.head(row), global_row(p, cta.b, cta.seq, cta.query(row)));
        float* dst = w.o_partial + at * p.dim_v;
        CUTE_UNROLL
        for (int c = 0; c < size<1>(o); c += 2)
            *reinterpret_cast<float2*>(dst + get<1>(ocoord(r, c))) = make_float2(o(r, c), o(r, c + 1));
        if (get<1>(ocoord(0, 0)) == 0) w.lse_partial[at] = lse[r];
    }
}

template <int kDqk, int kDv, DType kDType>
Status run_split(const core::AttnParams& p, const SplitWork& w) {
    using T = SplitTraits<kDqk, kDv, kDType>;
    auto kernel = split_kernel<T>;
    Status s = cuda::cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, T::kSmemBytes),
                                 "cudaFuncSetAttribute");
    if (!s.ok()) return s;
    const unsigned slots = unsigned(p.mask_kind == MaskKind::block_sparse ? p.heads_q : p.heads_kv);
    const dim3 grid(unsigned(w.m_tiles * w.splits), slots, unsigned(p.batch));
    kernel<<<grid, kThreads, T::kSmemBytes, static_cast<cudaStream_t>(p.stream)>>>(p, w);
    return cuda::cuda_status(cudaGetLastError(), "split-KV kernel launch");
}

}  // namespace ccattn::decode
