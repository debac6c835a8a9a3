// The backward main kernel, FlashAttention-2 style on mma.sync (sm80 and later).
//
// One CTA per (kv-tile, q chunk, KV head, batch). It keeps its K and V tiles in shared memory and its
// dK, dV accumulators in registers (fp32), and walks the q-tiles of its chunk that see the kv-tile
// (QTileSchedule). With GQA a q-tile packs the G query heads of the KV head, so one pass accumulates
// the whole group. Per q-tile:
//   S  = Q K^T,  P = exp2(S * scale * log2 e - lse * log2 e)  (masked pairs and empty rows give P = 0)
//   dP = dO V^T, dS = P * (dP - D)
//   dV += P^T dO,  dK += dS^T Q,  dQ_accum += dS K  (fp32 atomics; the convert kernel scales it;
//   deterministic mode orders them between CTAs, AddOrder; q-tiles of one visitor store dQ: DirectDq)
// Q and dO tiles are double-buffered where shared memory allows (cp.async prefetch of the next q-tile).
// With one chunk per kv-tile the CTA writes dK and dV; with several it adds them into fp32 accumulators.
#pragma once

#include <cstdint>
#include <new>

#include <cute/tensor.hpp>

#include "core/band.h"
#include "core/band_source.h"
#include "core/params.h"
#include "sm80/backward_params.h"
#include "sm80/backward_schedule.h"
#include "sm80/backward_traits.h"
#include "sm80/copy.h"
#include "sm80/fragment.h"
#include "sm80/gemm.h"
#include "sm80/kernel_traits.h"
#include "gpu/register_mask.h"
#include "gpu/turns.h"

namespace ccattn::sm80 {
namespace bwd {

using namespace cute;

// acc += A B^T with both operands in shared memory: sA (M, K) and sB (N, K) as ldmatrix reads them,
// fA and fB the same shapes unswizzled (they size the register fragments).
template <class AtomA, class AtomB, class Mma, class Acc, class SA, class FA, class SB, class FB>
__device__ __forceinline__ void gemm_smem(Acc& acc, const Mma& mma, const SA& sA, const FA& fA, const SB& sB,
                                          const FB& fB, int tid) {
    auto thr_mma = mma.get_thread_slice(tid);
    Tensor rA = thr_mma.partition_fragment_A(fA);  // (MMA, MMA_M, MMA_K)
    Tensor rB = thr_mma.partition_fragment_B(fB);  // (MMA, MMA_N, MMA_K)
    auto copy_a = make_tiled_copy_A(AtomA{}, mma);
    auto copy_b = make_tiled_copy_B(AtomB{}, mma);
    gemm_ss(acc, rA, rB, copy_a.get_thread_slice(tid).partition_S(sA), copy_b.get_thread_slice(tid).partition_S(sB), mma,
            copy_a, copy_b, tid);
}

// A (rows, cols) tile of shared memory at element offset `offset`.
template <class Layout, class Element>
__device__ __forceinline__ auto smem_tile(Element* smem, int offset) {
    return make_tensor(make_smem_ptr(smem + offset), Layout{});
}

// Calls put(row_ptr(r) + c, acc(r, c), acc(r, c + 1)) for each adjacent column pair c of tile row r
// (row_ptr(r) == nullptr: row not stored).
template <int kM, int kN, class Mma, class Acc, class RowPtr, class Put>
__device__ __forceinline__ void for_each_column_pair(const Mma& mma, Acc& acc, int tid, RowPtr row_ptr, Put put) {
    auto coord = rowcol(mma.get_thread_slice(tid).partition_C(make_identity_tensor(Shape<Int<kM>, Int<kN>>{})));
    auto v = rowcol(acc);
    CUTE_UNROLL
    for (int r = 0; r < size<0>(v); ++r) {
        auto* dst = row_ptr(get<0>(coord(r, 0)));
        if (dst == nullptr) continue;
        CUTE_UNROLL
        for (int c = 0; c < size<1>(v); c += 2) put(dst + get<1>(coord(r, c)), v(r, c), v(r, c + 1));
    }
}

// acc * scale added into fp32 rows with atomics; two adjacent columns at once where the hardware has
// it (sm90).
template <int kM, int kN, class Mma, class Acc, class RowPtr>
__device__ __forceinline__ void atomic_add_rows(const Mma& mma, Acc& acc, float scale, int tid, RowPtr row_ptr) {
    for_each_column_pair<kM, kN>(mma, acc, tid, row_ptr, [scale](float* d, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        atomicAdd(reinterpret_cast<float2*>(d), make_float2(a * scale, b * scale));
#else
        atomicAdd(d, a * scale);
        atomicAdd(d + 1, b * scale);
#endif
    });
}

// acc * scale converted to the element type and stored, two adjacent columns a store.
template <int kM, int kN, class Mma, class Acc, class RowPtr>
__device__ __forceinline__ void store_converted_rows(const Mma& mma, Acc& acc, float scale, int tid, RowPtr row_ptr) {
    for_each_column_pair<kM, kN>(mma, acc, tid, row_ptr, [scale](auto* d, float a, float b) {
        using Element = cute::remove_cvref_t<decltype(*d)>;
        cute::array<Element, 2> pair;
        pair[0] = Element(a * scale);
        pair[1] = Element(b * scale);
        *reinterpret_cast<cute::array<Element, 2>*>(d) = pair;
    });
}

// Where one CTA works: its batch, KV head, sequence and first key.
struct CtaCoord {
    int b = 0, kv_head = 0;
    core::Sequence seq;
    core::SequenceBand band;
    std::int64_t n0 = 0;
    std::int64_t q_row0 = 0;  // dense row of the sequence's first query (workspaces)
    std::int64_t k_row0 = 0;  // dense row of its first key
};

// Uniform per-CTA state, kept in shared memory so that it costs no registers next to the dK / dV
// accumulators. Thread 0 runs the schedule two q-tiles ahead of the others into a ring of three slots:
// during iteration i every thread reads slots i % 3 (this q-tile) and (i + 1) % 3 (the one to prefetch)
// while thread 0 fills (i + 2) % 3, published by the barrier that ends the iteration.
struct CtaState {
    CtaCoord cta;
    QTileSchedule schedule;
    QTile tiles[3];
    bool has[3];
};
static_assert(sizeof(CtaState) <= kBackwardStateBytes, "raise kBackwardStateBytes");

// Deterministic mode (turn != nullptr): the CTA's atomics between begin_turn and end_turn come after
// those of the adders of lower rank and before those of higher rank (gpu/turns.h). Every adder waits
// only on CTAs of lower blockIdx.x and the same blockIdx.y (AddOrder); the grid-stride loop over
// (batch, KV head) visits them in the same order in every CTA of one y.
__device__ __forceinline__ void begin_turn(const int* turn, int rank, int tid) {
    if (turn == nullptr) return;
    if (tid == 0) gpu::wait_turn(turn, rank);
    __syncthreads();
}
__device__ __forceinline__ void end_turn(int* turn, int tid) {
    if (turn == nullptr) return;
    __threadfence();
    __syncthreads();
    if (tid == 0) gpu::pass_turn(turn);
}

// Issues the cp.async loads of q-tile t's Q and dO rows into buffer `stage`.
template <class Traits>
__device__ __forceinline__ void load_q_tile(const BackwardParams& bp, const CtaCoord& cta, const QTile& t, int stage,
                                            typename Traits::Element* smem, int tid) {
    using Element = typename Traits::Element;
    const core::AttnParams& p = bp.p;
    auto rows_of = [&](const void* base, core::Strides s) {
        return [&, base, s](int r) -> const Element* {
            const QRow q = q_row(t, r, Traits::kBlockM, cta.seq.seqlen_q);
            return q.valid ? static_cast<const Element*>(base) + core::offset(s, cta.b, cta.seq.row_q, q.i, q.h) : nullptr;
        };
    };
    Tensor sQ = smem_tile<typename Traits::SmemQ>(smem, stage * Traits::kQSize);
    Tensor sdO = smem_tile<typename Traits::SmemdO>(smem, Traits::kOffdO + stage * Traits::kdOSize);
    load_rows_async<Traits::kThreads>(sQ, tid, rows_of(p.q, p.q_strides));
    load_rows_async<Traits::kThreads>(sdO, tid, rows_of(p.dout, p.dout_strides));
}

// One q-tile's contribution: dK, dV accumulate in registers, dQ goes to the fp32 accumulator.
// kDeterministic: the call orders its additions (AddOrder); a runtime branch on it added ~45 spill
// loads to the default d128 kernel.
template <class Traits, bool kDeterministic, class AccK, class AccV>
__device__ __forceinline__ void backward_tile(const BackwardParams& bp, const CtaCoord& cta, const QTile& t, int stage,
                                              typename Traits::Element* smem, AccK& acc_dk, AccV& acc_dv, int tid) {
    using Element = typename Traits::Element;
    using T = Traits;
    constexpr int kBlockM = T::kBlockM, kBlockN = T::kBlockN, kDqk = T::kDqk;
    using LdsmN = LdsmCopy<Element>;
    using LdsmT = LdsmCopyTransposed<Element>;
    const core::AttnParams& p = bp.p;

    const int q_off = stage * T::kQSize, do_off = T::kOffdO + stage * T::kdOSize;
    Tensor sQ = smem_tile<typename T::SmemQ>(smem, q_off);          // (q_tile, Dqk)
    Tensor sQt = smem_tile<typename T::SmemQt>(smem, q_off);        // (Dqk, q_tile)
    Tensor fQt = smem_tile<typename T::ShapeQt>(smem, q_off);
    Tensor sdO = smem_tile<typename T::SmemdO>(smem, do_off);       // (q_tile, Dv)
    Tensor sdOt = smem_tile<typename T::SmemdOt>(smem, do_off);     // (Dv, q_tile)
    Tensor fdOt = smem_tile<typename T::ShapedOt>(smem, do_off);
    Tensor sK = smem_tile<typename T::SmemK>(smem, T::kOffK);       // (kv_tile, Dqk)
    Tensor sKt = smem_tile<typename T::SmemKt>(smem, T::kOffK);     // (Dqk, kv_tile)
    Tensor fKt = smem_tile<typename T::ShapeKt>(smem, T::kOffK);
    Tensor sV = smem_tile<typename T::SmemV>(smem, T::kOffV);       // (kv_tile, Dv)
    Tensor sP = smem_tile<typename T::SmemPdS>(smem, T::kOffP);     // (q_tile, kv_tile)
    Tensor sPt = smem_tile<typename T::SmemPdSt>(smem, T::kOffP);   // (kv_tile, q_tile)
    Tensor fPt = smem_tile<typename T::ShapePdSt>(smem, T::kOffP);
    Tensor sdS = smem_tile<typename T::SmemPdS>(smem, T::kOffdS);   // (q_tile, kv_tile)
    Tensor sdSt = smem_tile<typename T::SmemPdSt>(smem, T::kOffdS);  // (kv_tile, q_tile)
    Tensor fdSt = smem_tile<typename T::ShapePdSt>(smem, T::kOffdS);

    typename T::MmaSdP mma_sdp;
    auto thr_sdp = mma_sdp.get_thread_slice(tid);
    // Tile coordinates (row, col) of this thread's S / dP elements, as (rows, cols).
    Tensor tScS = thr_sdp.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kBlockN>>{}));
    auto coord = rowcol(tScS);
    constexpr int kRows = decltype(size<0>(coord))::value;
    constexpr int kCols = decltype(size<1>(coord))::value;

    // Per-row values, loaded before the S product so that their latency hides behind it.
    float lse2[kRows];            // lse * log2(e); +inf for empty rows and rows past the end: P = 0
    float dsum[kRows];            // D = rowsum(dO * O)
    std::int64_t query[kRows];    // query position (element masks)
    int lo[kRows], hi[kRows];     // visible columns [lo, hi) of this tile (limits / bounds masks)
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
        const QRow q = q_row(t, get<0>(coord(r, 0)), kBlockM, cta.seq.seqlen_q);
        query[r] = q.i;
        lse2[r] = INFINITY;
        dsum[r] = 0.f;
        if (q.valid) {
            const float lse = p.lse[core::lse_offset(p, cta.b, cta.seq.row_q, q.i, q.h)];
            lse2[r] = lse == -INFINITY ? INFINITY : lse * 1.4426950408889634f;
            dsum[r] = bp.dsum[(cta.q_row0 + q.i) * p.heads_q + q.h];
        }
        if (t.mask == TileMask::limits) {
            band_columns(cta.band, q.i, cta.n0, kBlockN, lo[r], hi[r]);
        } else {
            lo[r] = 0;
            hi[r] = int(core::clamp(cta.seq.seqlen_k - cta.n0, 0, kBlockN));  // TileMask::bounds
        }
    }

    // S = Q K^T in log2 units, masked to -inf, then P = exp2(S - lse2) in place.
    Tensor acc_s = partition_fragment_C(mma_sdp, Shape<Int<kBlockM>, Int<kBlockN>>{});  // (MMA, MMA_M, MMA_N)
    clear(acc_s);
    gemm_smem<LdsmN, LdsmN>(acc_s, mma_sdp, sQ, sQ, sK, sK, tid);
    CUTE_UNROLL
    for (int i = 0; i < size(acc_s); ++i) acc_s(i) *= p.scale_log2;  // any sign of scale works
    auto s = rowcol(acc_s);
    if (t.mask == TileMask::limits || t.mask == TileMask::bounds) {
        gpu::mask_band(s, coord, lo, hi, 0);
    } else if (t.mask == TileMask::element) {
        const gpu::ElementBand in_band(cta.band.formula);
        gpu::mask_elements(s, coord, [&](int r, int col) { return in_band(query[r], cta.n0 + col); });
    } else if (t.mask == TileMask::sparse) {
        const gpu::ElementBand in_band(cta.band.formula);
        gpu::mask_elements(s, coord, [&](int r, int col) {
            return sparse_visible(t, bp.sparse, cta.n0, col, cta.seq.seqlen_k, in_band(query[r], cta.n0 + col));
        });
    }
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
        CUTE_UNROLL
        for (int c = 0; c < kCols; ++c) s(r, c) = exp2f(s(r, c) - lse2[r]);
    }
    auto store_c = make_tiled_copy_C(AccumStoreCopy<Element>{}, mma_sdp);
    auto thr_store_c = store_c.get_thread_slice(tid);
    {
        Tensor rP = convert_fragment<Element>(acc_s);
        copy(store_c, thr_store_c.retile_S(rP), thr_store_c.partition_D(sP));
    }

    // dP = dO V^T, then dS = P (dP - D) in place.
    Tensor acc_dp = partition_fragment_C(mma_sdp, Shape<Int<kBlockM>, Int<kBlockN>>{});
    clear(acc_dp);
    gemm_smem<LdsmN, LdsmN>(acc_dp, mma_sdp, sdO, sdO, sV, sV, tid);
    auto ds = rowcol(acc_dp);
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
        CUTE_UNROLL
        for (int c = 0; c < kCols; ++c) ds(r, c) = s(r, c) * (ds(r, c) - dsum[r]);
    }
    {
        Tensor rdS = convert_fragment<Element>(acc_dp);
        copy(store_c, thr_store_c.retile_S(rdS), thr_store_c.partition_D(sdS));
    }
    __syncthreads();  // P and dS complete in shared memory

    // dV += P^T dO.
    typename T::MmadKV mma_dkv;
    gemm_smem<LdsmT, LdsmT>(acc_dv, mma_dkv, sPt, fPt, sdOt, fdOt, tid);

    // dQ_accum += dS K (fp32 atomics; in deterministic mode in the q-tile's turn order), or dQ = dS K
    // stored where this CTA's is the q-tile's whole dQ (DirectDq).
    {
        typename T::MmadQ mma_dq;
        Tensor acc_dq = partition_fragment_C(mma_dq, Shape<Int<kBlockM>, Int<kDqk>>{});  // (MMA, MMA_M, MMA_N)
        clear(acc_dq);
        gemm_smem<LdsmN, LdsmT>(acc_dq, mma_dq, sdS, sdS, sKt, fKt, tid);
        if (t.direct) {
            store_converted_rows<kBlockM, kDqk>(mma_dq, acc_dq, p.scale, tid, [&](int r) -> Element* {
                const QRow q = q_row(t, r, kBlockM, cta.seq.seqlen_q);
                return q.valid ? static_cast<Element*>(p.dq) + core::offset(p.dq_strides, cta.b, cta.seq.row_q, q.i, q.h)
                               : nullptr;
            });
        } else {
            int* turn = kDeterministic ? bp.order.dq_turn(cta.b, cta.kv_head, t.m_block, 0) : nullptr;
            begin_turn(turn, t.rank, tid);
            atomic_add_rows<kBlockM, kDqk>(mma_dq, acc_dq, 1.f, tid, [&](int r) -> float* {
                const QRow q = q_row(t, r, kBlockM, cta.seq.seqlen_q);
                return q.valid ? bp.dq_accum + ((cta.q_row0 + q.i) * p.heads_q + q.h) * kDqk : nullptr;
            });
            end_turn(turn, tid);
        }
    }

    // dK += dS^T Q (scaled once, in the epilogue).
    gemm_smem<LdsmT, LdsmT>(acc_dk, mma_dkv, sdSt, fdSt, sQt, fQt, tid);
}

// One CTA's whole job: every q-tile of its schedule, then dK and dV of its kv-tile (zeros when no
// query sees it), or their parts from its chunk.
template <class Traits, bool kDeterministic>
__device__ __forceinline__ void backward_cta(const BackwardParams& bp, int b, int kv_head, std::int64_t n_block,
                                             int chunk, typename Traits::Element* smem) {
    using Element = typename Traits::Element;
    constexpr int kBlockN = Traits::kBlockN, kThreads = Traits::kThreads;
    const core::AttnParams& p = bp.p;
    const int tid = threadIdx.x;

    auto* state = reinterpret_cast<CtaState*>(smem + Traits::kStateOffset);
    if (tid == 0) {
        CtaCoord& c = state->cta;
        c.b = b;
        c.kv_head = kv_head;
        c.seq = core::sequence(p, b);
        c.n0 = n_block * kBlockN;
        c.band = core::sequence_band(p, b, c.seq);
        c.q_row0 = p.varlen() ? c.seq.row_q : std::int64_t(b) * p.seqlen_q;
        c.k_row0 = core::key_row0(p.varlen(), b, c.seq.row_k, p.seqlen_k);
        state->has[0] = state->has[1] = false;
        if (c.n0 < c.seq.seqlen_k) {
            new (&state->schedule) QTileSchedule(bp, c.band, b, kv_head, n_block, chunk, c.seq.seqlen_q,
                                                 c.seq.seqlen_k, Traits::kBlockM, kBlockN);
            state->has[0] = state->schedule.next(state->tiles[0]);
            if (state->has[0]) state->has[1] = state->schedule.next(state->tiles[1]);
            for (int k = 0; k < 2; ++k)
                if (kDeterministic && state->has[k]) state->tiles[k].rank = state->schedule.rank(state->tiles[k]);
        }
    }
    __syncthreads();
    const CtaCoord& cta = state->cta;
    if (cta.n0 >= cta.seq.seqlen_k) return;  // past this sequence's keys: nothing to write

    Tensor sK = smem_tile<typename Traits::SmemK>(smem, Traits::kOffK);  // (kv_tile, Dqk)
    Tensor sV = smem_tile<typename Traits::SmemV>(smem, Traits::kOffV);  // (kv_tile, Dv)
    // Key rows of this tile past the sequence end are zero-filled on load and never stored.
    auto key_rows = [&](auto* base, core::Strides s) {
        return [&, base, s](int r) {
            const std::int64_t j = cta.n0 + r;
            return j < cta.seq.seqlen_k ? base + core::offset(s, cta.b, cta.seq.row_k, j, cta.kv_head) : nullptr;
        };
    };

    typename Traits::MmadKV mma_dkv;
    Tensor acc_dk = partition_fragment_C(mma_dkv, Shape<Int<kBlockN>, Int<Traits::kDqk>>{});  // (MMA, MMA_N, MMA_D)
    Tensor acc_dv = partition_fragment_C(mma_dkv, Shape<Int<kBlockN>, Int<Traits::kDv>>{});
    clear(acc_dk);
    clear(acc_dv);

    const bool any_tile = state->has[0];
    if (any_tile) {
        load_rows_async<kThreads>(sK, tid, key_rows(static_cast<const Element*>(p.k), p.k_strides));
        load_rows_async<kThreads>(sV, tid, key_rows(static_cast<const Element*>(p.v), p.v_strides));
        load_q_tile<Traits>(bp, cta, state->tiles[0], 0, smem, tid);
        cp_async_fence();
    }
    for (int i = 0, stage = 0; state->has[i % 3]; ++i) {
        const int cur = i % 3, next = (i + 1) % 3, ahead = (i + 2) % 3;
        const bool have_next = state->has[next];
        if (tid == 0) {
            state->has[ahead] = have_next && state->schedule.next(state->tiles[ahead]);
            if (kDeterministic && state->has[ahead])
                state->tiles[ahead].rank = state->schedule.rank(state->tiles[ahead]);
        }
        if constexpr (Traits::kStages == 2) {
            if (have_next) load_q_tile<Traits>(bp, cta, state->tiles[next], stage ^ 1, smem, tid);
            cp_async_fence();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();  // this q-tile (and K, V) landed for every thread
        backward_tile<Traits, kDeterministic>(bp, cta, state->tiles[cur], stage, smem, acc_dk, acc_dv, tid);
        __syncthreads();  // every warp is done with this q-tile's buffers and sP / sdS; slot `ahead` is published
        if constexpr (Traits::kStages == 2) {
            stage ^= 1;
        } else if (have_next) {
            load_q_tile<Traits>(bp, cta, state->tiles[next], 0, smem, tid);
            cp_async_fence();
        }
    }

    cp_async_wait<0>();
    if (bp.chunks.count > 1) {  // a share of dK, dV: added into the fp32 accumulators
        // In deterministic mode in chunk order; a chunk with nothing to add still takes its turn.
        int* turn = kDeterministic ? bp.order.dkv_turn(cta.b, cta.kv_head, n_block, 0) : nullptr;
        begin_turn(turn, chunk, tid);
        if (any_tile) {
            auto key_accum = [&](float* base, int dim) {
                return [&, base, dim](int r) -> float* {
                    const std::int64_t j = cta.n0 + r;
                    return j < cta.seq.seqlen_k ? base + ((cta.k_row0 + j) * p.heads_kv + cta.kv_head) * dim : nullptr;
                };
            };
            atomic_add_rows<kBlockN, Traits::kDqk>(mma_dkv, acc_dk, p.scale, tid, key_accum(bp.dk_accum, Traits::kDqk));
            atomic_add_rows<kBlockN, Traits::kDv>(mma_dkv, acc_dv, 1.f, tid, key_accum(bp.dv_accum, Traits::kDv));
        }
        end_turn(turn, tid);
        return;
    }

    // Epilogue: dK * scale and dV through shared memory (sK and sV are no longer read) to global rows.
    CUTE_UNROLL
    for (int i = 0; i < size(acc_dk); ++i) acc_dk(i) *= p.scale;
    auto store_c = make_tiled_copy_C(AccumStoreCopy<Element>{}, mma_dkv);
    auto thr_store_c = store_c.get_thread_slice(tid);
    {
        Tensor rdK = convert_fragment<Element>(acc_dk);
        Tensor rdV = convert_fragment<Element>(acc_dv);
        copy(store_c, thr_store_c.retile_S(rdK), thr_store_c.partition_D(sK));
        copy(store_c, thr_store_c.retile_S(rdV), thr_store_c.partition_D(sV));
    }
    __syncthreads();
    store_rows<kThreads>(sK, tid, key_rows(static_cast<Element*>(p.dk), p.dk_strides));
    store_rows<kThreads>(sV, tid, key_rows(static_cast<Element*>(p.dv), p.dv_strides));
}

template <class Traits, bool kDeterministic>
__global__ void __launch_bounds__(Traits::kThreads, 1) backward_kernel(const __grid_constant__ BackwardParams bp) {
    extern __shared__ __align__(128) unsigned char smem_raw[];
    auto* smem = reinterpret_cast<typename Traits::Element*>(smem_raw);
    const std::int64_t heads = std::int64_t(bp.p.batch) * bp.p.heads_kv;
    const unsigned kv_tiles = unsigned(core::num_tiles(bp.p.seqlen_k, Traits::kBlockN));
    const int chunk = int(blockIdx.x / kv_tiles);  // chunk-major: CTAs of one chunk run together
    const std::int64_t n_block = AddOrder::kv_tile_of(blockIdx.x % kv_tiles, kv_tiles, kDeterministic);
    for (std::int64_t bh = blockIdx.y; bh < heads; bh += gridDim.y) {
        backward_cta<Traits, kDeterministic>(bp, int(bh / bp.p.heads_kv), int(bh % bp.p.heads_kv), n_block, chunk, smem);
        __syncthreads();  // the next (batch, head) reuses shared memory
    }
}

}  // namespace bwd

template <int kDqk, int kDv, DType kDType>
cudaError_t launch_backward(const BackwardParams& params, cudaStream_t stream) {
    using Traits = BackwardTraits<kDqk, kDv, kDType>;
    const core::AttnParams& p = params.p;
    const std::int64_t ctas = core::num_tiles(p.seqlen_k, Traits::kBlockN) * params.chunks.count;
    const std::int64_t heads = std::int64_t(p.batch) * p.heads_kv;
    if (ctas == 0 || heads == 0) return cudaSuccess;
    if (ctas > 0x7fffffff) return cudaErrorInvalidConfiguration;
    // The driver skips the accumulator rows of direct q-tiles by its tile sizes, which must be the kernel's.
    if (params.direct.q_tile != Traits::kBlockM || params.direct.kv_tile != Traits::kBlockN) return cudaErrorInvalidValue;
    // Deterministic mode (the driver allocated turn counters) has its own kernel: see backward_tile.
    auto kernel = params.order.dq != nullptr ? bwd::backward_kernel<Traits, true> : bwd::backward_kernel<Traits, false>;
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Traits::kSmemBytes);
    if (err != cudaSuccess) return err;
    const dim3 grid(unsigned(ctas), unsigned(heads < 65535 ? heads : 65535));
    kernel<<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(params);
    return cudaGetLastError();
}

}  // namespace ccattn::sm80
