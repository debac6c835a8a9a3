// The consumer warp groups of the Hopper backward: 256 threads, warp group w owning keys
// [64 w, 64 w + 64) of the CTA's kv tile. Per q-tile (64 packed rows, from the producer's stage):
//   Sᵀ = K Qᵀ and dPᵀ = V dOᵀ                   issued together
//   Pᵀ = exp2(Sᵀ scale log2e - lse log2e)      masked pairs 0, while dPᵀ runs
//   dSᵀ = Pᵀ (dPᵀ - D)                          then dV += Pᵀ dO and dK += dSᵀ Q are issued (16-bit
//                                               register A operands), and dSᵀ goes to shared memory
//   dQ = dS K                                   both warp groups' dSᵀ; warp group w: head-dim half w
//                                               (at Dqk 192: every other 64-column block), staged in
//                                               shared memory and added into the fp32 dQ accumulator
//                                               by TMA reduce-adds (stored directly where this CTA is
//                                               the q-tile's only visitor)
// At Dqk 192 the first four steps run twice per q-tile, on 32 rows each (BackwardTraits::kParts). At
// 256 (BackwardTraits::kSharedP: 64 keys a CTA) warp group w takes rows [32 w, 32 w + 32) of Sᵀ and
// dPᵀ for all keys, Pᵀ joins dSᵀ in shared memory, and after the barrier it makes head-dim half w of
// dV and dK from both (shared-memory A operands) beside its dQ blocks.
// At the end dK (scaled) and dV are written, or added into fp32 accumulators for a chunked q range.
// Deterministic mode orders the dQ and chunked dK / dV additions between CTAs (sm80::AddOrder).
#pragma once

#include <cstdint>

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>

#include "core/params.h"
#include "core/schedule.h"
#include "gpu/register_mask.h"
#include "gpu/turns.h"
#include "sm80/backward_params.h"
#include "sm80/backward_schedule.h"
#include "sm90/backward_cta.h"
#include "sm90/backward_params.h"
#include "sm90/fragment.h"
#include "sm90/named_barriers.h"
#include "sm90/wgmma.h"

namespace ccattn::sm90 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor (the public view type)

// kElementMasks: the call masks per element (mask_mod, block-sparse lists); band calls compile without
// those paths, whose registers would otherwise spill next to dK and dV. kDirect: some q-tiles store their
// dQ (QTile::direct); without it the branch's spills cost the long cases ~2%. kDeterministic: the call orders
// its additions (sm80::AddOrder); a runtime branch on it added ~20 spill loads and stores at d128.
template <class Traits, bool kElementMasks, bool kDeterministic, bool kDirect>
struct BackwardConsumer {
    using Element = typename Traits::Element;
    using Barrier = cutlass::arch::ClusterBarrier;
    static constexpr int kBlockM = Traits::kBlockM;
    static constexpr int kBlockN = Traits::kBlockN;
    static constexpr int kDimQK = Traits::kDimQK;
    static constexpr int kDimV = Traits::kDimV;

    // Pᵀ in place of Sᵀ: exp2(s scale_log2 - lse2) where visible(row, col), else 0. Rows are keys,
    // columns packed query rows of the tile.
    template <class S, class Coords, class Visible>
    CUTE_DEVICE static void exponentiate(S& s, const Coords& cs, const float* lse2, float scale_log2,
                                         Visible&& visible) {
        CUTE_UNROLL
        for (int r = 0; r < size<0>(s); ++r) {
            CUTE_UNROLL
            for (int c = 0; c < size<1>(s); ++c) {
                const int col = get<1>(cs(r, c));
                s(r, c) = visible(r, col) ? exp2f(s(r, c) * scale_log2 - lse2[col]) : 0.f;
            }
        }
    }

    // acc * scale added into fp32 rows: row_ptr(r) is the destination of accumulator row r (nullptr:
    // not stored); adjacent column pairs as float2 atomics.
    template <class Acc, class Coords, class RowPtr>
    CUTE_DEVICE static void atomic_add_rows(const Acc& acc, const Coords& coords, float scale, RowPtr&& row_ptr) {
        CUTE_UNROLL
        for (int r = 0; r < size<0>(acc); ++r) {
            float* dst = row_ptr(get<0>(coords(r, 0)));
            if (dst == nullptr) continue;
            CUTE_UNROLL
            for (int c = 0; c < size<1>(acc); c += 2)
                atomicAdd(reinterpret_cast<float2*>(dst + get<1>(coords(r, c))),
                          make_float2(acc(r, c) * scale, acc(r, c + 1) * scale));
        }
    }

    // acc * scale converted and stored to rows row_ptr(r) (nullptr: not stored), column pairs at once.
    template <class Acc, class Coords, class RowPtr>
    CUTE_DEVICE static void store_rows(const Acc& acc, const Coords& coords, float scale, RowPtr&& row_ptr) {
        using Pair = cute::array<Element, 2>;
        CUTE_UNROLL
        for (int r = 0; r < size<0>(acc); ++r) {
            Element* dst = row_ptr(get<0>(coords(r, 0)));
            if (dst == nullptr) continue;
            CUTE_UNROLL
            for (int c = 0; c < size<1>(acc); c += 2) {
                Pair v;
                v[0] = Element(acc(r, c) * scale);
                v[1] = Element(acc(r, c + 1) * scale);
                *reinterpret_cast<Pair*>(dst + get<1>(coords(r, c))) = v;
            }
        }
    }

    // src (registers) -> dst (shared memory), both partitioned by a copy of 32-bit units, so linear
    // elements 2i, 2i + 1 are adjacent in memory: one st.shared.b32 per pair (through a generic pointer
    // the compiler would emit 64-bit generic stores).
    template <class Src, class Dst>
    CUTE_DEVICE static void store_pairs_shared(const Src& src, Dst&& dst) {
        static_assert(sizeof(Element) == 2);
        CUTE_STATIC_ASSERT_V(size(src) == size(dst));
        CUTE_UNROLL
        for (int i = 0; i < size(src); i += 2) {
            const std::uint32_t pair = std::uint32_t(src(i).raw()) | (std::uint32_t(src(i + 1).raw()) << 16);
            asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(cast_smem_ptr_to_uint(&dst(i))), "r"(pair));
        }
    }

    // Deterministic mode: warp group wg's additions between begin_turn and end_turn come after those
    // of the adders of lower rank (gpu/turns.h), all CTAs of lower blockIdx.x, same y and z
    // (sm80::AddOrder).
    CUTE_DEVICE static void begin_turn(const int* turn, int rank, int wg, bool leader) {
        if (!kDeterministic) return;
        if (leader) gpu::wait_turn(turn, rank);
        warp_group_sync(wg);
    }
    CUTE_DEVICE static void end_turn(int* turn, int wg, bool leader) {
        if (!kDeterministic) return;
        __threadfence();
        warp_group_sync(wg);
        if (leader) gpu::pass_turn(turn);
    }

    // This warp group's dQ columns [col0, col0 + kCols) of a q-tile (coordinates cq: packed row, dQ column)
    // stored (the CTA is its only visitor: QTile::direct) or added into the fp32 dQ accumulator. By TMA:
    // staged in shared memory as the swizzled boxes the tensor map describes (column pairs as
    // st.shared.v2.f32, conflict-free), then one reduce-add (cp.reduce.async.bulk.tensor .add) per
    // 32-column box, issued by one thread, so that no warp of the group waits on a per-row issue loop.
    // The staging buffer is reused once the previous reduce-adds have read it. Tiles that do not move
    // by TMA add their rows with float2 atomics. In deterministic mode the issuer takes the group's
    // turn around the reduce-adds and waits for them to complete (not only to have read the buffer)
    // before passing it; `group` names the turn (AddOrder::groups: a warp group's half, or a block).
    template <int kCols, class Acc, class Coords>
    CUTE_DEVICE static void add_dq(const BackwardKernelParams& kp, const BackwardCta& cta, const sm80::QTile& t,
                                   const typename Traits::RowData& rows, float (*sdq)[kBlockM][Traits::kDqBoxCols],
                                   const Acc& acc, const Coords& cq, int col0, int group, int wg, bool issuer) {
        constexpr int kBoxes = kCols / Traits::kDqBoxCols;
        static_assert(kCols % Traits::kDqBoxCols == 0 && kBoxes <= Traits::kDqSlots);
        if (kDirect && t.direct) {  // this CTA's is the q-tile's whole dQ (sm80::DirectDq): stored, no accumulator
            store_rows(acc, cq, kp.bp.p.scale, [&](int r) -> Element* {
                return rows.dq_row[r] < 0 ? nullptr : static_cast<Element*>(kp.bp.p.dq) + rows.dq_row[r];
            });
            return;
        }
        int* turn = kDeterministic ? kp.bp.order.dq_turn(cta.b, cta.kv_head, t.m_block, group) : nullptr;
        if (!kp.tile_by_tma(cta.seq, t, kBlockM)) {
            begin_turn(turn, t.rank, wg, issuer);
            atomic_add_rows(acc, cq, 1.f, [&](int r) -> float* {
                return rows.dq_row[r] < 0 ? nullptr : kp.bp.dq_accum + rows.dq_row[r];
            });
            end_turn(turn, wg, issuer);
            return;
        }
        if (issuer) tma_store_wait<0>();
        warp_group_sync(wg);
        CUTE_UNROLL
        for (int r = 0; r < size<0>(acc); ++r) {
            const int row = get<0>(cq(r, 0));
            CUTE_UNROLL
            for (int c = 0; c < size<1>(acc); c += 2) {
                const int col = get<1>(cq(r, c)) - col0;
                const int box = col / Traits::kDqBoxCols, in_box = col % Traits::kDqBoxCols;
                // 128-byte swizzle: 16-byte chunk k of row r lies at chunk k ^ (r % 8).
                float* dst = &sdq[box][row][((in_box / 4) ^ (row % 8)) * 4 + in_box % 4];
                asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(cast_smem_ptr_to_uint(dst)), "f"(acc(r, c)),
                             "f"(acc(r, c + 1)));
            }
        }
        cutlass::arch::fence_view_async_shared();  // generic-proxy stores, read next by the TMA unit
        warp_group_sync(wg);
        if (!issuer) return;
        if (kDeterministic) {
            gpu::wait_turn(turn, t.rank);
            asm volatile("fence.proxy.async.global;\n" ::: "memory");  // the reduce-adds (async proxy) after it
        }
        const int row = int(cta.q_row0 + t.m_block * kBlockM / t.pack);  // dense row of the tile's first query
        CUTE_UNROLL
        for (int box = 0; box < kBoxes; ++box)
            SM90_TMA_REDUCE_ADD_4D::copy(&kp.tma_dq, &sdq[box][0][0], col0 + box * Traits::kDqBoxCols, t.head0, row, 0);
        tma_store_arrive();
        if (kDeterministic) {
            asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");  // written, not only read
            asm volatile("fence.proxy.async.global;\n" ::: "memory");
            gpu::pass_turn(turn);
        }
    }

    // ct: this thread's index among the consumer threads, 0..255.
    CUTE_DEVICE static void run(const BackwardKernelParams& kp, const BackwardCta& cta,
                                typename Traits::SharedStorage& smem, int ct) {
        const sm80::BackwardParams& bp = kp.bp;
        const core::AttnParams& p = bp.p;
        typename Traits::TiledMmaS mma_s;
        typename Traits::TiledMmadP mma_dp;
        typename Traits::TiledMmadV mma_dv;
        typename Traits::TiledMmadK mma_dk;
        typename Traits::TiledMmadQ mma_dq;
        auto thr_s = mma_s.get_thread_slice(ct);
        auto thr_dp = mma_dp.get_thread_slice(ct);
        auto thr_dv = mma_dv.get_thread_slice(ct);
        auto thr_dk = mma_dk.get_thread_slice(ct);
        auto thr_dq = mma_dq.get_thread_slice(Traits::kDqByBlocks ? ct % Traits::kWarpGroupThreads : ct);

        Tensor sQ = make_tensor(make_smem_ptr(smem.q.data()), typename Traits::SmemLayoutQ{});       // (rows, Dqk, stage)
        Tensor sQt = make_tensor(make_smem_ptr(smem.q.data()), typename Traits::SmemLayoutQt{});     // (Dqk, rows, stage)
        Tensor sdO = make_tensor(make_smem_ptr(smem.dout.data()), typename Traits::SmemLayoutdO{});  // (rows, Dv, stage)
        Tensor sdOt = make_tensor(make_smem_ptr(smem.dout.data()), typename Traits::SmemLayoutdOt{});  // (Dv, rows, stage)
        Tensor sK = make_tensor(make_smem_ptr(smem.k.data()), typename Traits::SmemLayoutK{});       // (keys, Dqk)
        Tensor sKt = make_tensor(make_smem_ptr(smem.k.data()), typename Traits::SmemLayoutKt{});     // (Dqk, keys)
        Tensor sV = make_tensor(make_smem_ptr(smem.v.data()), typename Traits::SmemLayoutV{});       // (keys, Dv)
        Tensor sdSt = make_tensor(make_smem_ptr(smem.ds.data()), typename Traits::SmemLayoutdSt{});  // (keys, rows, buffer)
        Tensor sdS = make_tensor(make_smem_ptr(smem.ds.data()), typename Traits::SmemLayoutdS{});    // (rows, keys, buffer)

        Tensor tSrK = thr_s.partition_fragment_A(sK);      // (MMA, MMA_M, MMA_K) descriptors
        Tensor tdPrV = thr_dp.partition_fragment_A(sV);    // (MMA, MMA_M, MMA_K)
        Tensor tdQrdS = thr_dq.partition_fragment_A(sdS);  // (MMA, MMA_M, MMA_K, buffer)
        // Part `part` of a stage's rows: kPartRows of the q-tile's (Traits::kParts).
        constexpr int kPartRows = Traits::kPartRows;
        auto rows_part = [](auto&& rows_first, int part) {  // (rows, cols)
            return local_tile(rows_first, Shape<Int<kPartRows>, Int<decltype(size<1>(rows_first))::value>>{},
                              make_coord(part, 0));
        };
        auto cols_part = [](auto&& rows_second, int part) {  // (cols, rows)
            return local_tile(rows_second, Shape<Int<decltype(size<0>(rows_second))::value>, Int<kPartRows>>{},
                              make_coord(0, part));
        };

        // dSᵀ (and with kSharedP Pᵀ) registers -> shared memory: the accumulator's column pairs as
        // 32-bit stores.
        auto r2s_ds = make_tiled_copy_C(Copy_Atom<UniversalCopy<std::uint32_t>, Element>{}, mma_dp);
        auto thr_r2s_ds = r2s_ds.get_thread_slice(ct);
        auto thr_r2s_p = make_tiled_copy_C(Copy_Atom<UniversalCopy<std::uint32_t>, Element>{}, mma_s).get_thread_slice(ct);
        auto sPt = [](auto& storage, int buffer) {  // kSharedP only: Pᵀ buffer `buffer`, (keys, rows)
            return make_tensor(make_smem_ptr(storage.p.data()), typename Traits::SmemLayoutPt{})(_, _, buffer);
        };

        using ShapeS = Shape<Int<kBlockN>, Int<kPartRows>>;  // Sᵀ of one part: (keys, rows)
        Tensor tSrS = partition_fragment_C(mma_s, ShapeS{});    // Sᵀ, then Pᵀ: (MMA, MMA_M, MMA_N)
        Tensor tdPrdP = partition_fragment_C(mma_dp, ShapeS{});  // dPᵀ, then dSᵀ
        Tensor tdVrP = make_tensor<Element>(a_operand_layout(tSrS.layout()));     // Pᵀ as dV's A operand
        Tensor tdKrdS = make_tensor<Element>(a_operand_layout(tdPrdP.layout()));  // dSᵀ as dK's A operand
        Tensor acc_dv = partition_fragment_C(mma_dv, Shape<Int<kBlockN>, Int<kDimV>>{});
        Tensor acc_dk = partition_fragment_C(mma_dk, Shape<Int<kBlockN>, Int<kDimQK>>{});
        clear(acc_dv);
        clear(acc_dk);

        // dQ coordinates (packed row, head-dim column); the first thread of each warp group issues its
        // reduce-adds.
        auto cq_all = make_identity_tensor(Shape<Int<kBlockM>, Int<kDimQK>>{});
        const int wg = ct / Traits::kWarpGroupThreads;
        const bool dq_issuer = ct % Traits::kWarpGroupThreads == 0;

        // (key, packed row) of every Sᵀ element of this thread in part `part`, as (rows, cols).
        auto coords_s = [&](int part) {
            auto all = make_identity_tensor(Shape<Int<kBlockN>, Int<kBlockM>>{});
            return rowcol_view(thr_s.partition_C(cols_part(all, part)));
        };
        auto cs = coords_s(0);
        constexpr int kRows = decltype(size<0>(cs))::value;
        // Per key row: its packed rows [row_lo, row_hi) under the band (the limits mask), and whether
        // the key lies inside the sequence (the bounds mask). Packed rows stay below 2^31 (checked).
        int row_lo[kRows], row_hi[kRows];
        bool key_valid[kRows];
        CUTE_UNROLL
        for (int r = 0; r < kRows; ++r) {
            const std::int64_t j = cta.n0 + get<0>(cs(r, 0));
            key_valid[r] = j < cta.seq.seqlen_k;
            const core::RowSpan rows_j = core::packed_rows_seeing(cta.band, j, cta.seq.seqlen_q, p.group);
            row_lo[r] = int(rows_j.begin);
            row_hi[r] = int(rows_j.end);
        }
        const gpu::ElementBand in_band(cta.band.formula);

        Barrier::wait(&smem.kv_full, 0);
        bool any_tile = false;
        for (int it = 0, ds_buffer = 0;; ++it, ds_buffer ^= 1) {
            const int stage = it % Traits::kStages;
            Barrier::wait(&smem.full[stage], (it / Traits::kStages) & 1);
            if (!smem.slots[stage].valid) break;
            any_tile = true;
            const sm80::QTile t = smem.slots[stage].tile;
            const typename Traits::RowData& rows = smem.rows[stage];

            const int r0 = int(t.m_block * kBlockM);  // packed row of column 0
            auto query_of = [&](int col) { return std::int64_t(std::uint32_t(r0 + col) / std::uint32_t(t.pack)); };
            auto key_of = [&](int r) { return int(get<0>(cs(r, 0))); };
            const float scale_log2 = p.scale_log2;
            CUTE_UNROLL
            for (int part = 0; part < Traits::kParts; ++part) {
                auto cs_p = coords_s(part);
                wgmma<true>(mma_s, tSrK, thr_s.partition_fragment_B(rows_part(sQ(_, _, stage), part)), tSrS);
                wgmma<true>(mma_dp, tdPrV, thr_dp.partition_fragment_B(rows_part(sdO(_, _, stage), part)), tdPrdP);
                warpgroup_wait<1>();
                warpgroup_fence_operand(tSrS);

                auto s = rowcol_view(tSrS);
                switch (t.mask) {
                    case sm80::TileMask::none:
                        exponentiate(s, cs_p, rows.lse2, scale_log2, [](int, int) { return true; });
                        break;
                    case sm80::TileMask::limits:
                        exponentiate(s, cs_p, rows.lse2, scale_log2,
                                     [&](int r, int col) { return row_lo[r] <= r0 + col && r0 + col < row_hi[r]; });
                        break;
                    case sm80::TileMask::bounds:
                        exponentiate(s, cs_p, rows.lse2, scale_log2, [&](int r, int) { return key_valid[r]; });
                        break;
                    case sm80::TileMask::element:
                        if constexpr (kElementMasks)
                            exponentiate(s, cs_p, rows.lse2, scale_log2,
                                         [&](int r, int col) { return in_band(query_of(col), cta.n0 + key_of(r)); });
                        break;
                    case sm80::TileMask::sparse:
                        if constexpr (kElementMasks)
                            exponentiate(s, cs_p, rows.lse2, scale_log2, [&](int r, int col) {
                                const std::int64_t j = cta.n0 + key_of(r);
                                return sm80::sparse_visible(t, bp.sparse, cta.n0, key_of(r), cta.seq.seqlen_k,
                                                            in_band(query_of(col), j));
                            });
                        break;
                }
                warpgroup_wait<0>();  // dPᵀ ready
                warpgroup_fence_operand(tdPrdP);
                // dSᵀ in place of dPᵀ, from the fp32 Pᵀ; then both feed their products as 16-bit A operands.
                auto ds = rowcol_view(tdPrdP);
                CUTE_UNROLL
                for (int r = 0; r < size<0>(ds); ++r) {
                    CUTE_UNROLL
                    for (int c = 0; c < size<1>(ds); ++c) ds(r, c) = s(r, c) * (ds(r, c) - rows.dsum[get<1>(cs_p(r, c))]);
                }
                convert_fragment(tSrS, tdVrP);
                convert_fragment(tdPrdP, tdKrdS);
                if constexpr (Traits::kSharedP) {
                    // Each warp group's dV needs both groups' rows of Pᵀ: through shared memory (after
                    // the barrier below), in the buffer that alternates with dSᵀ's.
                    store_pairs_shared(thr_r2s_p.retile_S(make_tensor(tdVrP.data(), tSrS.layout())),
                                       thr_r2s_p.partition_D(sPt(smem, ds_buffer)));
                } else {
                    wgmma<false>(mma_dv, tdVrP, thr_dv.partition_fragment_B(cols_part(sdOt(_, _, stage), part)), acc_dv);
                    // One-part q-tiles issue dK after dQ (below, FA3's order), so that staging dQ overlaps
                    // dK's product; at Dqk 192 (two parts, dQ by blocks) each part's dK goes beside its dV.
                    if constexpr (Traits::kDqByBlocks)
                        wgmma<false>(mma_dk, tdKrdS, thr_dk.partition_fragment_B(cols_part(sQt(_, _, stage), part)), acc_dk);
                }

                // dSᵀ to shared memory for dQ, two adjacent rows (columns here) per 32-bit store. The buffer
                // alternates: the other warp group may still read the previous q-tile's until it reaches
                // this q-tile's ds_ready_sync.
                store_pairs_shared(thr_r2s_ds.retile_S(make_tensor(tdKrdS.data(), tdPrdP.layout())),
                                   thr_r2s_ds.partition_D(cols_part(sdSt(_, _, ds_buffer), part)));
            }
            cutlass::arch::fence_view_async_shared();  // generic-proxy stores, read next by wgmma
            ds_ready_sync();

            if constexpr (Traits::kSharedP) {  // head-dim half wg of dV and dK, over all 64 keys and rows
                wgmma<false>(mma_dv, thr_dv.partition_fragment_A(sPt(smem, ds_buffer)),
                             thr_dv.partition_fragment_B(sdOt(_, _, stage)), acc_dv);
                wgmma<false>(mma_dk, thr_dk.partition_fragment_A(sdSt(_, _, ds_buffer)),
                             thr_dk.partition_fragment_B(sQt(_, _, stage)), acc_dk);
            }
            if constexpr (Traits::kDqByBlocks) {
                // Blocks of 64 columns: warp group w takes every other block from w + m_block (the same
                // blocks in every CTA that adds into this q-tile, for deterministic mode's per-block turns).
                // dV, dK done first where their 16-bit A operands must leave the registers; with kSharedP
                // they run on beside the first block (its wait<0> waits for them: the stage is then free).
                if constexpr (!Traits::kSharedP) warpgroup_wait<0>();
                constexpr int kBlocks = kDimQK / 64;
                const int blk0 = int((wg + t.m_block) % 2);
                auto dq_block = [&](int blk) {
                    Tensor acc_dq = partition_fragment_C(mma_dq, Shape<Int<kBlockM>, _64>{});  // (MMA, MMA_M, MMA_N)
                    Tensor tdQrK = thr_dq.partition_fragment_B(
                        local_tile(sKt, Shape<_64, Int<kBlockN>>{}, make_coord(blk, 0)));  // (MMA, MMA_N, MMA_K)
                    wgmma<true>(mma_dq, tdQrdS(_, _, _, ds_buffer), tdQrK, acc_dq);
                    warpgroup_wait<0>();
                    warpgroup_fence_operand(acc_dq);
                    add_dq<64>(kp, cta, t, rows, smem.dq[wg], rowcol_view(acc_dq),
                               rowcol_view(thr_dq.partition_C(local_tile(cq_all, Shape<Int<kBlockM>, _64>{}, make_coord(0, blk)))),
                               blk * 64, blk, wg, dq_issuer);
                };
                if constexpr (kBlocks % 2 == 0) {
                    // A fixed trip count: dV and dK in flight (kSharedP) must not cross a data-dependent
                    // loop, or ptxas serializes every wgmma of the kernel.
                    CUTE_UNROLL
                    for (int i = 0; i < kBlocks / 2; ++i) dq_block(blk0 + 2 * i);
                } else {
                    for (int blk = blk0; blk < kBlocks; blk += 2) dq_block(blk);
                }
                warpgroup_fence_operand(acc_dv);
                warpgroup_fence_operand(acc_dk);
            } else {
                // dQ first, then dK: dQ is staged and sent while dK runs.
                Tensor acc_dq = partition_fragment_C(mma_dq, Shape<Int<kBlockM>, Int<kDimQK>>{});  // (MMA, MMA_M, MMA_N)
                Tensor tdQrK = thr_dq.partition_fragment_B(sKt);  // (MMA, MMA_N, MMA_K)
                wgmma<true>(mma_dq, tdQrdS(_, _, _, ds_buffer), tdQrK, acc_dq);
                wgmma<false>(mma_dk, tdKrdS, thr_dk.partition_fragment_B(cols_part(sQt(_, _, stage), 0)), acc_dk);
                warpgroup_wait<1>();  // dV and dQ done
                warpgroup_fence_operand(acc_dq);
                warpgroup_fence_operand(acc_dv);
                add_dq<Traits::kDqCols>(kp, cta, t, rows, smem.dq[wg], rowcol_view(acc_dq),
                                        rowcol_view(thr_dq.partition_C(cq_all)), wg * Traits::kDqCols, wg, wg, dq_issuer);
                warpgroup_wait<0>();  // dK done: it read the stage's Q and dSᵀ's registers
                warpgroup_fence_operand(tdKrdS);
                warpgroup_fence_operand(acc_dk);
            }
            Barrier::arrive(&smem.empty[stage]);  // this thread is done with the stage
        }
        if (dq_issuer) tma_store_wait<0>();  // the last reduce-adds have read the staging buffer

        // dK, dV of this CTA's keys: written, or added into the fp32 accumulators of a chunked q range.
        using ShapedK = Shape<Int<kBlockN>, Int<kDimQK>>;
        using ShapedV = Shape<Int<kBlockN>, Int<kDimV>>;
        auto ck = rowcol_view(thr_dk.partition_C(make_identity_tensor(ShapedK{})));
        auto cv = rowcol_view(thr_dv.partition_C(make_identity_tensor(ShapedV{})));
        auto key_ok = [&](int r) { return cta.n0 + r < cta.seq.seqlen_k; };
        if (bp.chunks.count > 1) {
            // In deterministic mode in chunk order, per warp group (its own keys); a chunk with nothing
            // to add still takes its turn.
            int* turn = kDeterministic ? bp.order.dkv_turn(cta.b, cta.kv_head, cta.n_block, wg) : nullptr;
            begin_turn(turn, cta.chunk, wg, dq_issuer);
            if (any_tile) {
                auto key_accum = [&](float* base, int dim) {
                    return [&, base, dim](int r) -> float* {
                        return key_ok(r) ? base + ((cta.k_row0 + cta.n0 + r) * p.heads_kv + cta.kv_head) * dim : nullptr;
                    };
                };
                atomic_add_rows(rowcol_view(acc_dk), ck, p.scale, key_accum(bp.dk_accum, kDimQK));
                atomic_add_rows(rowcol_view(acc_dv), cv, 1.f, key_accum(bp.dv_accum, kDimV));
            }
            end_turn(turn, wg, dq_issuer);
            return;
        }
        auto key_rows = [&](void* base, const core::Strides& st) {
            return [&, base](int r) -> Element* {
                return key_ok(r) ? static_cast<Element*>(base) +
                                       core::offset(st, cta.b, cta.seq.row_k, cta.n0 + r, cta.kv_head)
                                 : nullptr;
            };
        };
        store_rows(rowcol_view(acc_dk), ck, p.scale, key_rows(p.dk, p.dk_strides));
        store_rows(rowcol_view(acc_dv), cv, 1.f, key_rows(p.dv, p.dv_strides));
    }
};

}  // namespace ccattn::sm90
