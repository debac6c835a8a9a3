// The producer warp group of the Hopper backward: loads the CTA's K and V tiles once, then for each
// q-tile of the schedule (sm80::QTileSchedule, run by its first thread) loads the Q and dO rows and
// each row's lse, D and dQ accumulator row into the next free stage. Q and dO come by TMA where the
// call allows it (BackwardKernelParams::tma_rows): a q-tile's 64 GQA-packed rows are G heads of 64 / G
// consecutive rows, one box. Otherwise, and for a varlen sequence's last q-tile (whose box would
// reach into the next sequence), rows are gathered with 16-byte cp.async, zero-filled past the end.
#pragma once

#include <cstdint>

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>

#include "core/params.h"
#include "sm80/backward_params.h"
#include "sm80/backward_schedule.h"
#include "sm90/backward_cta.h"
#include "sm90/backward_params.h"
#include "sm90/named_barriers.h"

namespace ccattn::sm90 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor (the public view type)

// kDeterministic: the consumers take turns on each q-tile's dQ, by the rank put in its slot.
template <class Traits, bool kDeterministic>
struct BackwardProducer {
    using Element = typename Traits::Element;
    using Barrier = cutlass::arch::ClusterBarrier;
    static constexpr int kBlockM = Traits::kBlockM;
    static constexpr int kThreads = Traits::kWarpGroupThreads;

    // Copies rows [0, kRows) of the tiles `dst` (each (rows, dim) in shared memory) from the global
    // rows row_ptr(r, tensor) (nullptr: zero-filled, so that products on them stay finite), 16 bytes a
    // thread at a time, 8 threads per 128-byte swizzle row. Rows are walked without unrolling: the
    // producer has few registers.
    template <int kRows, class RowPtr, class... Smem>
    CUTE_DEVICE static void gather_rows(int tid, RowPtr&& row_ptr, Smem&... dst) {
        constexpr int kThreadsPerRow = 8, kChunk = 8;  // 8 x 16 bytes: one 64-element swizzle row
        constexpr int kRowsPerPass = kThreads / kThreadsPerRow;
        static_assert(kRows % kRowsPerPass == 0);
#pragma unroll 1
        for (int r = tid / kThreadsPerRow; r < kRows; r += kRowsPerPass) {
            int tensor = 0;
            (copy_row(dst, row_ptr(r, tensor++), r, (tid % kThreadsPerRow) * kChunk), ...);
        }
    }

    template <class Smem>
    CUTE_DEVICE static void copy_row(Smem& dst, const Element* src, int r, int col0) {
        constexpr int kDim = decltype(size<1>(dst))::value;
        const bool valid = src != nullptr;  // else a zero-byte source: the chunk is zero-filled
        CUTE_UNROLL
        for (int c = col0; c < kDim; c += 64)
            SM80_CP_ASYNC_CACHEGLOBAL_ZFILL<uint128_t>::copy(*reinterpret_cast<const uint128_t*>(valid ? src + c : src),
                                                             *reinterpret_cast<uint128_t*>(&dst(r, c)), valid);
    }

    // K and V, rows past the sequence zero-filled.
    CUTE_DEVICE static void load_kv(const sm80::BackwardParams& bp, const BackwardCta& cta,
                                    typename Traits::SharedStorage& smem, int tid) {
        const core::AttnParams& p = bp.p;
        Tensor sK = make_tensor(make_smem_ptr(smem.k.data()), typename Traits::SmemLayoutK{});  // (keys, Dqk)
        Tensor sV = make_tensor(make_smem_ptr(smem.v.data()), typename Traits::SmemLayoutV{});  // (keys, Dv)
        gather_rows<Traits::kBlockN>(
            tid,
            [&](int r, int tensor) -> const Element* {
                const std::int64_t j = cta.n0 + r;
                if (j >= cta.seq.seqlen_k) return nullptr;
                return tensor == 0 ? static_cast<const Element*>(p.k) + core::offset(p.k_strides, cta.b, cta.seq.row_k, j, cta.kv_head)
                                   : static_cast<const Element*>(p.v) + core::offset(p.v_strides, cta.b, cta.seq.row_k, j, cta.kv_head);
            },
            sK, sV);
        cp_async_fence();
        cp_async_wait<0>();
        cutlass::arch::fence_view_async_shared();
        Barrier::arrive(&smem.kv_full);
    }

    // Q and dO of q-tile t into `stage` by TMA, issued by one thread: kDim / 64 boxes of 64 packed rows
    // x 64 columns per tensor, counted in bytes on the stage's full barrier.
    CUTE_DEVICE static void load_rows_tma(const BackwardKernelParams& kp, const BackwardCta& cta, const sm80::QTile& t,
                                          int stage, typename Traits::SharedStorage& smem) {
        constexpr std::uint32_t kBytes = kBlockM * (Traits::kDimQK + Traits::kDimV) * sizeof(Element);
        cutlass::arch::ClusterTransactionBarrier::expect_transaction(&smem.full[stage], kBytes);
        constexpr auto kHint = static_cast<std::uint64_t>(TMA::CacheHintSm90::EVICT_NORMAL);
        const bool varlen = kp.bp.p.varlen();
        const int row = int(cta.seq.row_q + t.m_block * kBlockM / t.pack), batch = varlen ? 0 : cta.b;
        auto boxes = [&](const CUtensorMap& map, Element* tile, int dim) {
            // Column block c / 64 of the K-major SW128 tile: kBlockM rows of 128 bytes, after the blocks before it.
            for (int c = 0; c < dim; c += 64)
                SM90_TMA_LOAD_4D::copy(&map, &smem.full[stage], kHint, tile + (c / 64) * (kBlockM * 64), c, t.head0, row,
                                       batch);
        };
        boxes(kp.tma_q, smem.q.data() + stage * kBlockM * Traits::kDimQK, Traits::kDimQK);
        boxes(kp.tma_dout, smem.dout.data() + stage * kBlockM * Traits::kDimV, Traits::kDimV);
    }

    // Q and dO of q-tile t into `stage` by cp.async, rows past the sequence zero-filled.
    CUTE_DEVICE static void gather_q_tile(const core::AttnParams& p, const BackwardCta& cta, const sm80::QTile& t,
                                          int stage, typename Traits::SharedStorage& smem, int tid) {
        Tensor sQ = make_tensor(make_smem_ptr(smem.q.data()), typename Traits::SmemLayoutQ{})(_, _, stage);
        Tensor sdO = make_tensor(make_smem_ptr(smem.dout.data()), typename Traits::SmemLayoutdO{})(_, _, stage);
        gather_rows<kBlockM>(
            tid,
            [&](int r, int tensor) -> const Element* {
                const sm80::QRow q = sm80::q_row(t, r, kBlockM, cta.seq.seqlen_q);
                if (!q.valid) return nullptr;
                return tensor == 0 ? static_cast<const Element*>(p.q) + core::offset(p.q_strides, cta.b, cta.seq.row_q, q.i, q.h)
                                   : static_cast<const Element*>(p.dout) + core::offset(p.dout_strides, cta.b, cta.seq.row_q, q.i, q.h);
            },
            sQ, sdO);
        cp_async_fence();
    }

    // Each row's lse * log2(e) (+inf past the sequence and for empty rows: P = 0), D and dQ row (of
    // the output for a direct q-tile, else of the fp32 accumulator).
    CUTE_DEVICE static void load_row_data(const sm80::BackwardParams& bp, const BackwardCta& cta, const sm80::QTile& t,
                                          typename Traits::RowData& rows, int tid) {
        const core::AttnParams& p = bp.p;
        const sm80::QRow q = sm80::q_row(t, tid, kBlockM, cta.seq.seqlen_q);
        float lse2 = INFINITY, dsum = 0.f;
        std::int64_t dq_row = -1;
        if (q.valid) {
            const float lse = p.lse[core::lse_offset(p, cta.b, cta.seq.row_q, q.i, q.h)];
            lse2 = lse == -INFINITY ? INFINITY : lse * 1.4426950408889634f;
            const std::int64_t pair = (cta.q_row0 + q.i) * p.heads_q + q.h;
            dsum = bp.dsum[pair];
            dq_row = t.direct ? core::offset(p.dq_strides, cta.b, cta.seq.row_q, q.i, q.h) : pair * p.dim_qk;
        }
        rows.lse2[tid] = lse2;
        rows.dsum[tid] = dsum;
        rows.dq_row[tid] = dq_row;
    }

    // Q, dO and the row data of q-tile t into `stage`; each thread's writes are complete (TMA's are
    // counted on the barrier) when it arrives on the stage's full barrier.
    CUTE_DEVICE static void load_q_tile(const BackwardKernelParams& kp, const BackwardCta& cta, const sm80::QTile& t,
                                        int stage, typename Traits::SharedStorage& smem, int tid) {
        const bool tma = kp.tile_by_tma(cta.seq, t, kBlockM);
        if (tma) {
            if (tid == 0) load_rows_tma(kp, cta, t, stage, smem);
        } else {
            gather_q_tile(kp.bp.p, cta, t, stage, smem, tid);
        }
        if (tid < kBlockM) load_row_data(kp.bp, cta, t, smem.rows[stage], tid);
        if (!tma) {
            cp_async_wait<0>();
            cutlass::arch::fence_view_async_shared();  // generic-proxy writes, read next by wgmma
        }
    }

    CUTE_DEVICE static void run(const BackwardKernelParams& kp, const BackwardCta& cta,
                                typename Traits::SharedStorage& smem, int tid) {
        if (tid == 0 && kp.tma_rows) {
            cute::prefetch_tma_descriptor(&kp.tma_q);
            cute::prefetch_tma_descriptor(&kp.tma_dout);
        }
        load_kv(kp.bp, cta, smem, tid);
        for (int it = 0;; ++it) {
            const int stage = it % Traits::kStages;
            const std::uint32_t phase = (it / Traits::kStages) & 1;
            Barrier::wait(&smem.empty[stage], phase ^ 1);  // a fresh barrier passes parity 1 at once
            if (tid == 0) {
                auto& slot = smem.slots[stage];
                slot.valid = smem.schedule.next(slot.tile);
                if (kDeterministic && slot.valid) slot.tile.rank = smem.schedule.rank(slot.tile);
            }
            producer_sync();  // the slot is visible to every producer thread
            const bool valid = smem.slots[stage].valid;
            if (valid) load_q_tile(kp, cta, smem.slots[stage].tile, stage, smem, tid);
            Barrier::arrive(&smem.full[stage]);
            if (!valid) return;
        }
    }
};

}  // namespace ccattn::sm90
