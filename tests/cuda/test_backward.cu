// The CUDA backward kernels: the portable (sm80) one and the Hopper (sm90) one, which share the host
// driver (sm80::backward_with) and the q-tile schedule.
// Host checks (any machine): the backward's MMA fragment ownership (S/dP, dK/dV and dQ: every element
// exactly once; the dQ atomics pair adjacent columns), and the q-tile schedule of one CTA against brute
// force for the band, mask_mod and block-sparse mechanisms, including the per-key block-sparse
// predicate.
// GPU checks (skipped without a device of compute capability >= 8.0, and for the sm90 kernel without
// one of 9.0): sm80::backward and sm90::backward with out and lse from the CUDA forward, on fresh random inputs with NaN-poisoned gradients, against the fp64 oracle
// (dq, dk, dv; exact zeros for rows that see no key and keys no row sees) and the CPU backend, for every
// head-dim pair and dtype, each band case also run as mask_mod and block-sparse; deterministic mode:
// bitwise-identical gradients over runs on other streams and beside another kernel, and (host) the
// ranks by which its CTAs take turns and that the turns cannot deadlock under in-order dispatch.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <cute/tensor.hpp>

#include "api/validate.h"
#include "ccattn/cuda_tiles.h"
#include "core/band.h"
#include "core/bound_bands.h"
#include "core/dtype.h"
#include "core/schedule.h"
#include "cuda/cuda_status.h"
#include "cuda/gpu_test_util.h"
#include "cuda/grad_check.h"
#include "cuda/non_finite.h"
#include "sm80/backward_chunks.h"
#include "sm80/backward_params.h"
#include "sm80/backward_schedule.h"
#include "sm80/backward_tiles.h"
#include "sm80/backward_traits.h"
#include "sm80/fragment.h"
#include "sm80/sm80.h"
#include "sm90/backward_traits.h"
#include "sm90/sm90.h"

namespace ccattn {
namespace {

using namespace test;

// ---------------------------------------------------------------------------------------------
// Host checks

// Every element of an (M, N) accumulator of `Mma` is owned by exactly one thread; adjacent columns
// 2k, 2k+1 of a thread's row view are adjacent matrix columns (the paired dQ atomics rely on it).
template <class Mma, int kM, int kN>
void check_accumulator(int threads) {
    using namespace cute;
    Mma mma;
    auto ident = make_identity_tensor(Shape<Int<kM>, Int<kN>>{});
    std::vector<int> owner(kM * kN, -1);
    for (int tid = 0; tid < threads; ++tid) {
        auto c = sm80::rowcol(mma.get_thread_slice(tid).partition_C(ident));
        for (int r = 0; r < size<0>(c); ++r)
            for (int k = 0; k < size<1>(c); ++k) {
                const int row = get<0>(c(r, k)), col = get<1>(c(r, k));
                ASSERT_EQ(row, get<0>(c(r, 0)));
                ASSERT_EQ(owner[row * kN + col], -1) << "(" << row << ", " << col << ") owned twice";
                owner[row * kN + col] = tid;
                if (k % 2 == 1) ASSERT_EQ(col, get<1>(c(r, k - 1)) + 1);
            }
    }
    EXPECT_EQ(std::count(owner.begin(), owner.end(), -1), 0);
}

template <class T>
void check_backward_fragments() {
    check_accumulator<typename T::MmaSdP, T::kBlockM, T::kBlockN>(T::kThreads);
    check_accumulator<typename T::MmadKV, T::kBlockN, T::kDqk>(T::kThreads);
    check_accumulator<typename T::MmadKV, T::kBlockN, T::kDv>(T::kThreads);
    check_accumulator<typename T::MmadQ, T::kBlockM, T::kDqk>(T::kThreads);
}

TEST(Sm80BackwardHost, FragmentOwnership) {
    check_backward_fragments<sm80::BackwardTraits<64, 64, DType::bf16>>();
    check_backward_fragments<sm80::BackwardTraits<128, 128, DType::fp16>>();
    check_backward_fragments<sm80::BackwardTraits<192, 128, DType::bf16>>();
    check_backward_fragments<sm80::BackwardTraits<256, 256, DType::fp16>>();
}

std::vector<sm80::QTile> walk(sm80::QTileSchedule s) {
    std::vector<sm80::QTile> tiles;
    sm80::QTile t;
    while (s.next(t)) tiles.push_back(t);
    return tiles;
}

// Cutting the q range into chunks of `length` (q-tiles, or sparse q-tiles) splits one CTA's walk: the
// chunks' walks together hold exactly its q-tiles, each once, with the same masks.
void expect_chunks_partition(sm80::BackwardParams bp, const core::CompressedBand& band, int b, int kv_head,
                             std::int64_t n, std::int64_t sq, std::int64_t sk, int q_tile, int kv_tile,
                             std::int64_t length) {
    auto key = [](const sm80::QTile& t) {
        return std::make_tuple(t.head0, t.m_block, t.pack, int(t.mask), t.sub_visit, t.sub_full);
    };
    std::vector<decltype(key(sm80::QTile{}))> whole, pieces;
    for (const sm80::QTile& t : walk(sm80::QTileSchedule(bp, band, b, kv_head, n, 0, sq, sk, q_tile, kv_tile)))
        whole.push_back(key(t));
    bp.chunks.length = length;
    bp.chunks.count = int(core::num_tiles(sq * bp.p.group, q_tile) / length + 2);  // more than enough
    for (int c = 0; c < bp.chunks.count; ++c)
        for (const sm80::QTile& t : walk(sm80::QTileSchedule(bp, band, b, kv_head, n, c, sq, sk, q_tile, kv_tile)))
            pieces.push_back(key(t));
    std::sort(whole.begin(), whole.end());
    std::sort(pieces.begin(), pieces.end());
    ASSERT_EQ(whole, pieces) << "chunks of " << length << " for kv-tile " << n;
}

// The accumulator -> shared-memory stores (P and dS of the S / dP MMA; dK, dV of the dK / dV MMA into
// the K and V tiles) put every element at its (row, col) of the swizzled tile. Run on the host with the
// kernel's tiled copies; 16-bit codes row * cols + col stand for the values.
template <class Mma, class Layout, int kM, int kN>
void check_accumulator_store(int threads) {
    using namespace cute;
    using Element = cutlass::half_t;
    Mma mma;
    std::vector<Element> smem(kM * kN, Element::bitcast(0xFFFF));
    auto s = cute::make_tensor(smem.data(), Layout{});
    auto store = make_tiled_copy_C(sm80::AccumStoreCopy<Element>{}, mma);
    for (int tid = 0; tid < threads; ++tid) {
        auto coord = mma.get_thread_slice(tid).partition_C(make_identity_tensor(Shape<Int<kM>, Int<kN>>{}));
        auto frag = cute::make_tensor<Element>(partition_fragment_C(mma, Shape<Int<kM>, Int<kN>>{}).layout());
        for (int i = 0; i < size(frag); ++i) frag(i) = Element::bitcast(std::uint16_t(get<0>(coord(i)) * kN + get<1>(coord(i))));
        auto thr = store.get_thread_slice(tid);
        copy(store, thr.retile_S(frag), thr.partition_D(s));
    }
    for (int r = 0; r < kM; ++r)
        for (int c = 0; c < kN; ++c) ASSERT_EQ(int(s(r, c).raw()), r * kN + c) << "(" << r << ", " << c << ")";
}

template <class T>
void check_backward_stores() {
    check_accumulator_store<typename T::MmaSdP, typename T::SmemPdS, T::kBlockM, T::kBlockN>(T::kThreads);
    check_accumulator_store<typename T::MmadKV, typename T::SmemK, T::kBlockN, T::kDqk>(T::kThreads);
    check_accumulator_store<typename T::MmadKV, typename T::SmemV, T::kBlockN, T::kDv>(T::kThreads);
}

TEST(Sm80BackwardHost, AccumulatorStores) {
    check_backward_stores<sm80::BackwardTraits<64, 64, DType::fp16>>();
    check_backward_stores<sm80::BackwardTraits<128, 128, DType::fp16>>();
    check_backward_stores<sm80::BackwardTraits<192, 128, DType::fp16>>();
    check_backward_stores<sm80::BackwardTraits<256, 256, DType::fp16>>();
}

// The Hopper backward reads its shared tiles through transposed views (MN-major operands, dS from
// dSᵀ): each must address the same element as the stored layout. Its dSᵀ stores (and at head dim 256
// its Pᵀ stores) pair the linear elements 2i, 2i + 1 of a 32-bit copy partition, which must be
// adjacent in memory for every thread, and together cover the buffer once.
template <class Traits>
void check_sm90_backward_layouts() {
    using Element = typename Traits::Element;
    auto transposed = [](auto stored, auto view) {
        for (int z = 0; z < int(cute::size<2>(stored)); ++z)
            for (int r = 0; r < int(cute::size<0>(stored)); ++r)
                for (int c = 0; c < int(cute::size<1>(stored)); ++c) ASSERT_EQ(stored(r, c, z), view(c, r, z));
    };
    transposed(typename Traits::SmemLayoutQ{}, typename Traits::SmemLayoutQt{});
    transposed(typename Traits::SmemLayoutdO{}, typename Traits::SmemLayoutdOt{});
    transposed(typename Traits::SmemLayoutdSt{}, typename Traits::SmemLayoutdS{});
    const typename Traits::SmemLayoutK k;
    const typename Traits::SmemLayoutKt kt;
    for (int r = 0; r < int(cute::size<0>(k)); ++r)
        for (int c = 0; c < int(cute::size<1>(k)); ++c) ASSERT_EQ(k(r, c), kt(c, r));

    auto check_stores = [](auto mma, auto layout) {
        // Swizzled shared-memory pointers XOR address bits: the buffer is 1024-byte aligned, as on the device.
        const std::size_t size = std::size_t(cute::cosize(layout));
        std::vector<Element> storage(size + 1024 / sizeof(Element));
        Element* buffer = storage.data() + (1024 - reinterpret_cast<std::uintptr_t>(storage.data()) % 1024) % 1024 / sizeof(Element);
        std::vector<int> hits(size, 0);
        auto sdst = cute::make_tensor(cute::make_smem_ptr(buffer), layout);
        auto r2s = cute::make_tiled_copy_C(cute::Copy_Atom<cute::UniversalCopy<std::uint32_t>, Element>{}, mma);
        for (int ct = 0; ct < Traits::kConsumerThreads; ++ct) {
            auto dst = r2s.get_thread_slice(ct).partition_D(sdst)(cute::_, cute::_, cute::_, 0);
            for (int i = 0; i < int(cute::size(dst)); i += 2) {
                const Element* first = &dst(i);
                ASSERT_EQ(&dst(i + 1) - first, 1) << "thread " << ct << " element " << i;
                ASSERT_EQ((first - buffer) % 2, 0) << "thread " << ct << " element " << i;  // 4-byte aligned
                for (int e = 0; e < 2; ++e) ASSERT_EQ(++hits[std::size_t(first - buffer) + e], 1) << "thread " << ct;
            }
        }
        std::size_t written = 0;  // one of the two buffers: half the elements, each once
        for (int h : hits) written += std::size_t(h);
        ASSERT_EQ(written, size / 2);
    };
    check_stores(typename Traits::TiledMmadP{}, typename Traits::SmemLayoutdSt{});
    if constexpr (Traits::kSharedP) check_stores(typename Traits::TiledMmaS{}, typename Traits::SmemLayoutPt{});
}

TEST(Sm90BackwardHost, SharedMemoryViews) {
    check_sm90_backward_layouts<sm90::BackwardTraits<cutlass::bfloat16_t, 64, 64>>();
    check_sm90_backward_layouts<sm90::BackwardTraits<cutlass::half_t, 128, 128>>();
    check_sm90_backward_layouts<sm90::BackwardTraits<cutlass::bfloat16_t, 192, 128>>();
    check_sm90_backward_layouts<sm90::BackwardTraits<cutlass::bfloat16_t, 256, 256>>();
}

TEST(Sm80BackwardHost, RowArithmetic) {
    std::mt19937_64 rng(3);
    auto pick = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
    // Packed rows of GQA groups that do and do not divide the tile.
    for (int pack : {1, 3, 8, 16}) {
        sm80::QTile t;
        t.m_block = 5;
        t.head0 = 6;
        t.pack = pack;
        for (int r = 0; r < 64; ++r) {
            const sm80::QRow q = sm80::q_row(t, r, 64, 100);
            const std::int64_t packed = 5 * 64 + r;
            ASSERT_EQ(q.valid, packed < 100 * pack);
            if (!q.valid) continue;
            EXPECT_EQ(q.i, packed / pack);
            EXPECT_EQ(q.h, 6 + packed % pack);
        }
    }
    // Band columns of a tile equal the band's [lo, hi) shifted into it.
    for (int iter = 0; iter < 3000; ++iter) {
        core::BandSpec spec;
        spec.causal = pick(0, 3) != 0;
        spec.compress_factor = pick(0, 1) ? pick(1, 70) : pick(1, std::int64_t(1) << 40);
        spec.has_diag_offset = true;
        spec.diag_offset = pick(0, 3) ? pick(-300, 300) : pick(-(std::int64_t(1) << 50), std::int64_t(1) << 50);
        spec.window_left = pick(0, 1) ? pick(0, 40) : core::kNoWindow;
        const core::CompressedBand band = spec.for_sequence(pick(1, 500), pick(1, 500));
        const std::int64_t i = pick(0, 499), n0 = 64 * pick(0, 8);
        int lo = -1, hi = -1;
        sm80::band_columns(band, i, n0, 64, lo, hi);
        EXPECT_EQ(lo, core::clamp(band.lo(i) - n0, 0, 64));
        EXPECT_EQ(hi, core::clamp(band.hi(i) - n0, 0, 64));
    }
}

// A random band for the schedule tests: causal 3 times in 4, cf 1 a third of the time (else up to
// max_cf), the default delta or one in [-max_delta, max_delta], a window up to max_window a third of
// the time. pick(lo, hi): a uniform integer in [lo, hi].
template <class Pick>
core::BandSpec random_band(Pick& pick, std::int64_t max_cf, std::int64_t max_delta, std::int64_t max_window) {
    core::BandSpec spec;
    spec.causal = pick(0, 3) != 0;
    spec.compress_factor = pick(0, 2) == 0 ? 1 : pick(1, max_cf);
    spec.has_diag_offset = pick(0, 1) != 0;
    spec.diag_offset = pick(-max_delta, max_delta);
    spec.window_left = pick(0, 2) == 0 ? pick(0, max_window) : core::kNoWindow;
    return spec;
}

// Band and mask_mod: a CTA visits, GQA-packed and in ascending order, every q-tile that holds a
// visible pair with its keys, and runs unmasked only q-tiles whose pairs (rows inside the sequence,
// keys inside the tile) are all visible.
TEST(Sm80BackwardHost, BandScheduleMatchesBruteForce) {
    std::mt19937_64 rng(5);
    auto pick = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
    for (int iter = 0; iter < 200; ++iter) {
        const core::BandSpec spec = random_band(pick, 40, 200, 50);
        const std::int64_t sq = pick(0, 180), sk = pick(1, 300);
        const int group = int(pick(1, 6)), q_tile = 64, kv_tile = pick(0, 1) ? 64 : 128;
        const core::CompressedBand band = spec.for_sequence(sq, sk);
        sm80::BackwardParams bp;
        bp.p.group = group;
        bp.p.heads_q = group;
        bp.p.heads_kv = 1;
        for (std::int64_t n = 0; n < core::num_tiles(sk, kv_tile); ++n) {
            bp.p.mask_kind = MaskKind::band;
            const auto tiles = walk(sm80::QTileSchedule(bp, band, 0, 0, n, 0, sq, sk, q_tile, kv_tile));
            for (std::size_t k = 1; k < tiles.size(); ++k) ASSERT_GT(tiles[k].m_block, tiles[k - 1].m_block);
            for (std::int64_t m = 0; m < core::num_tiles(sq * group, q_tile); ++m) {
                bool any = false, all = true;
                for (std::int64_t r = m * q_tile; r < std::min((m + 1) * q_tile, sq * group); ++r)
                    for (std::int64_t j = n * kv_tile; j < (n + 1) * kv_tile; ++j) {
                        const bool v = j < sk && core::visible(band, r / group, j);
                        any = any || v;
                        all = all && v;
                    }
                const auto it = std::find_if(tiles.begin(), tiles.end(), [&](const sm80::QTile& t) { return t.m_block == m; });
                if (any) ASSERT_NE(it, tiles.end()) << "q-tile " << m << " with visible pairs is skipped";
                if (it == tiles.end()) continue;
                EXPECT_EQ(it->pack, group);
                EXPECT_EQ(it->head0, 0);
                if (it->mask == sm80::TileMask::none) ASSERT_TRUE(all) << "q-tile " << m << " runs unmasked";
                else ASSERT_EQ(it->mask, sm80::TileMask::limits);
            }
            expect_chunks_partition(bp, band, 0, 0, n, sq, sk, q_tile, kv_tile, pick(1, 5));
            bp.p.mask_kind = MaskKind::mask_mod;
            expect_chunks_partition(bp, band, 0, 0, n, sq, sk, q_tile, kv_tile, pick(1, 5));
            const auto every = walk(sm80::QTileSchedule(bp, band, 0, 0, n, 0, sq, sk, q_tile, kv_tile));
            ASSERT_EQ(std::int64_t(every.size()), core::num_tiles(sq * group, q_tile));
            for (std::size_t k = 0; k < every.size(); ++k) {
                EXPECT_EQ(every[k].m_block, std::int64_t(k));
                EXPECT_EQ(every[k].mask, sm80::TileMask::element);
            }
        }
    }
}

// Block-sparse: random forward lists (skip / partial / full per (b, h, q-tile, kv-tile)) turned into the
// kernel's bit sets the way sparse_bits_kernel does; every CTA must visit, per query head in ascending
// order, exactly the kernel q-tiles whose sparse q-tile names one of its sparse kv-tiles, with the
// kinds of those kv-tiles, and its per-key predicate must equal the lists' meaning.
TEST(Sm80BackwardHost, SparseScheduleMatchesLists) {
    std::mt19937_64 rng(9);
    auto pick = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
    constexpr int kQTile = 64, kKvTile = 128;
    for (int iter = 0; iter < 60; ++iter) {
        const int batch = int(pick(1, 2)), heads_kv = int(pick(1, 2)), group = int(pick(1, 3));
        const int heads_q = heads_kv * group;
        const std::int64_t tm = kQTile * pick(1, 3);
        const std::int64_t tns[] = {5, 16, 48, 64, 80, 128, 176, 256, 384};  // dividing 128 or not
        const std::int64_t tn = tns[pick(0, 8)];
        const std::int64_t sq = pick(1, 400), sk = pick(1, 700);
        core::BandSpec spec;
        spec.causal = true;
        spec.compress_factor = pick(1, 4);
        const core::CompressedBand band = spec.for_sequence(sq, sk);
        const std::int64_t q_tiles = core::num_tiles(sq, tm), kv_tiles = core::num_tiles(sk, tn);
        // kind[(b, h, t, kt)]: 0 skip, 1 partial, 2 full.
        std::vector<int> kind(std::size_t(batch * heads_q * q_tiles * kv_tiles));
        for (int& k : kind) k = int(pick(0, 2) == 0 ? 0 : pick(1, 2));
        auto kind_of = [&](int b, int h, std::int64_t t, std::int64_t kt) {
            return kind[std::size_t(((b * heads_q + h) * q_tiles + t) * kv_tiles + kt)];
        };
        sm80::BackwardParams bp;
        bp.p.mask_kind = MaskKind::block_sparse;
        bp.p.group = group;
        bp.p.heads_q = heads_q;
        bp.p.heads_kv = heads_kv;
        sm80::SparseBits& sb = bp.sparse;
        sb.kv_tiles = kv_tiles;
        sb.words = core::ceil_div(q_tiles, 64);
        sb.tile_n = tn;
        sb.q_subtiles = int(tm / kQTile);
        std::vector<unsigned long long> visit(std::size_t(batch * heads_q * kv_tiles * sb.words)), full(visit.size());
        for (int b = 0; b < batch; ++b)
            for (int h = 0; h < heads_q; ++h)
                for (std::int64_t t = 0; t < q_tiles; ++t)
                    for (std::int64_t kt = 0; kt < kv_tiles; ++kt) {
                        const std::size_t w = std::size_t(((b * heads_q + h) * kv_tiles + kt) * sb.words + t / 64);
                        if (kind_of(b, h, t, kt) > 0) visit[w] |= 1ull << (t % 64);
                        if (kind_of(b, h, t, kt) == 2) full[w] |= 1ull << (t % 64);
                    }
        sb.visit = visit.data();
        sb.full = full.data();

        for (int b = 0; b < batch; ++b)
            for (int kvh = 0; kvh < heads_kv; ++kvh)
                for (std::int64_t n = 0; n < core::num_tiles(sk, kKvTile); ++n) {
                    expect_chunks_partition(bp, band, b, kvh, n, sq, sk, kQTile, kKvTile, pick(1, 4));
                    const auto tiles = walk(sm80::QTileSchedule(bp, band, b, kvh, n, 0, sq, sk, kQTile, kKvTile));
                    const std::int64_t n0 = n * kKvTile;
                    const std::int64_t kt0 = n0 / tn, kt1 = std::min(kv_tiles, core::ceil_div(n0 + kKvTile, tn));
                    std::size_t k = 0;
                    for (int g = 0; g < group; ++g) {
                        const int h = kvh * group + g;
                        for (std::int64_t m = 0; m < core::num_tiles(sq, kQTile); ++m) {
                            const std::int64_t t = m * kQTile / tm;
                            bool any = false;
                            for (std::int64_t kt = kt0; kt < kt1; ++kt) any = any || kind_of(b, h, t, kt) > 0;
                            if (!any) continue;
                            ASSERT_LT(k, tiles.size()) << "missing q-tile " << m << " of head " << h;
                            const sm80::QTile& q = tiles[k++];
                            ASSERT_EQ(q.m_block, m);
                            ASSERT_EQ(q.head0, h);
                            ASSERT_EQ(q.pack, 1);
                            // The per-key predicate against the lists' meaning, for rows of this q-tile.
                            for (std::int64_t r = m * kQTile; r < std::min((m + 1) * kQTile, sq); r += 7)
                                for (int col = 0; col < kKvTile; ++col) {
                                    const std::int64_t j = n0 + col;
                                    const int kd = j < sk ? kind_of(b, h, t, j / tn) : 0;
                                    const bool expect = j < sk && (kd == 2 || (kd == 1 && core::visible(band, r, j)));
                                    const bool got = q.mask == sm80::TileMask::none ||
                                                     (q.mask == sm80::TileMask::bounds && j < sk) ||
                                                     (q.mask == sm80::TileMask::sparse &&
                                                      sm80::sparse_visible(q, sb, n0, col, sk, core::visible(band, r, j)));
                                    ASSERT_EQ(got, expect) << "row " << r << " key " << j << " mask " << int(q.mask);
                                }
                        }
                    }
                    EXPECT_EQ(k, tiles.size()) << "extra q-tiles";
                }
    }
}

// Deterministic mode: the CTAs (kv tile n, chunk c) whose walks hold q-tile m must carry the ranks
// 0, 1, ..., count - 1, each rank's CTA at a lower blockIdx.x than the next one's (it waits on it), or
// the kernel waits forever. Every CTA of the grid is walked as the kernel runs it
// (kv tiles past the sequence's keys exit first), for random bands at several tile sizes, GQA groups
// and chunk lengths, and over a small exhaustive sweep; the sequences of a varlen batch are
// independent sequences of these lengths.
void expect_ranks_in_order(MaskKind kind, const core::CompressedBand& band, std::int64_t sq, std::int64_t sk,
                           std::int64_t max_k, int group, int q_tile, int kv_tile, std::int64_t chunk_length) {
    sm80::BackwardParams bp;
    bp.p.mask_kind = kind;
    bp.p.group = group;
    bp.p.heads_q = group;
    bp.p.heads_kv = 1;
    const std::int64_t q_tiles = core::num_tiles(sq * group, q_tile), kv_tiles = core::num_tiles(max_k, kv_tile);
    bp.chunks.length = chunk_length;
    bp.chunks.count = int(std::max<std::int64_t>(1, core::ceil_div(q_tiles, chunk_length)));
    struct Visit {
        std::int64_t n, block;  // kv tile, blockIdx.x
        int rank;
    };
    std::vector<std::vector<Visit>> visits(static_cast<std::size_t>(q_tiles));
    for (int c = 0; c < bp.chunks.count; ++c)
        for (std::int64_t n = 0; n < kv_tiles; ++n) {
            if (n * kv_tile >= sk) continue;  // the kernel's early exit
            const sm80::QTileSchedule schedule(bp, band, 0, 0, n, c, sq, sk, q_tile, kv_tile);
            for (const sm80::QTile& t : walk(schedule)) {
                ASSERT_LT(t.m_block, q_tiles);
                const std::int64_t block = c * kv_tiles + sm80::AddOrder::kv_tile_of(n, kv_tiles, true);
                visits[std::size_t(t.m_block)].push_back({n, block, schedule.rank(t)});
            }
        }
    for (std::int64_t m = 0; m < q_tiles; ++m) {
        std::vector<Visit>& v = visits[std::size_t(m)];
        std::sort(v.begin(), v.end(), [](const Visit& a, const Visit& b) { return a.rank < b.rank; });
        for (std::size_t r = 0; r < v.size(); ++r) {
            ASSERT_EQ(v[r].rank, int(r)) << "q-tile " << m << ": kv tile " << v[r].n << " has rank " << v[r].rank
                                         << " among " << v.size() << " adders";
            if (r > 0) {
                ASSERT_LT(v[r - 1].block, v[r].block) << "q-tile " << m << ": rank " << r << " waits on a later block";
            }
        }
    }
}

TEST(Sm80BackwardHost, DeterministicRanks) {
    std::mt19937_64 rng(11);
    auto pick = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
    for (int iter = 0; iter < 3000; ++iter) {
        const core::BandSpec spec = random_band(pick, 70, pick(0, 4) == 0 ? 3000 : 300, 300);
        const std::int64_t sq = pick(0, 900), sk = pick(1, 700), max_k = sk + (pick(0, 1) ? pick(0, 300) : 0);
        const int group = int(pick(0, 3) == 0 ? pick(1, 64) : pick(1, 6));
        const int kv_tile = pick(0, 1) ? 64 : 128;
        const core::CompressedBand band = spec.for_sequence(sq, sk);
        SCOPED_TRACE(::testing::Message() << "causal " << spec.causal << " cf " << band.compress_factor << " delta "
                                          << band.diag_offset << " window " << band.window_left << " Sq " << sq << " Sk "
                                          << sk << " group " << group << " kv tile " << kv_tile);
        for (MaskKind kind : {MaskKind::band, MaskKind::mask_mod})
            for (std::int64_t length : {std::int64_t(1) << 40, pick(1, 6)}) {
                expect_ranks_in_order(kind, band, sq, sk, max_k, group, 64, kv_tile, length);
                if (HasFatalFailure()) return;
            }
    }
    for (int causal = 0; causal < 2; ++causal)
        for (std::int64_t cf = 1; cf <= 5; ++cf)
            for (std::int64_t delta = -40; delta <= 40; delta += 3)
                for (std::int64_t window = -1; window <= 6; ++window)
                    for (std::int64_t sq : {1, 37, 130})
                        for (std::int64_t sk : {1, 20, 129}) {
                            core::BandSpec spec;
                            spec.causal = causal != 0;
                            spec.compress_factor = cf;
                            spec.has_diag_offset = true;
                            spec.diag_offset = delta;
                            spec.window_left = window < 0 ? core::kNoWindow : window * 7;
                            const core::CompressedBand band = spec.for_sequence(sq, sk);
                            SCOPED_TRACE(::testing::Message() << "causal " << causal << " cf " << cf << " delta "
                                                              << delta << " window " << band.window_left << " Sq "
                                                              << sq << " Sk " << sk);
                            for (int group : {1, 3})
                                for (int kv_tile : {16, 128}) {
                                    expect_ranks_in_order(MaskKind::band, band, sq, sk, sk, group, 16, kv_tile, 3);
                                    if (HasFatalFailure()) return;
                                }
                        }
}

// Direct dQ (sm80::DirectDq): a q-tile that sole_dq_tile names is visited by exactly one CTA of the
// grid, which has it as QTile::direct (from the classification the kernel reads); no other q-tile is
// direct. Every CTA (kv tile, chunk) is walked as the kernel runs it, for random built-in bands,
// mask_mod, and random band tensors (steps, flat runs, empty rows anywhere).
void expect_direct_tiles(sm80::BackwardParams bp, const core::SequenceBand& band, std::int64_t sq, std::int64_t sk,
                         int q_tile, int kv_tile, std::int64_t& direct_count) {
    const int group = bp.p.group;
    const std::int64_t q_tiles = core::num_tiles(sq * group, q_tile);
    std::vector<std::uint8_t> tiles(std::size_t(q_tiles) + 1);
    for (std::int64_t m = 0; m < q_tiles; ++m)
        tiles[std::size_t(m)] = sm80::sole_dq_tile(bp.p.mask_kind, band, m, q_tile, group, sq, kv_tile);
    bp.direct = {true, q_tile, kv_tile, tiles.data(), q_tiles};
    std::vector<int> visits(std::size_t(q_tiles), 0), direct(std::size_t(q_tiles), 0);
    for (int c = 0; c < bp.chunks.count; ++c)
        for (std::int64_t n = 0; n * kv_tile < sk; ++n)
            for (const sm80::QTile& t : walk(sm80::QTileSchedule(bp, band, 0, 0, n, c, sq, sk, q_tile, kv_tile))) {
                ++visits[std::size_t(t.m_block)];
                direct[std::size_t(t.m_block)] += t.direct;
            }
    for (std::int64_t m = 0; m < q_tiles; ++m) {
        if (tiles[std::size_t(m)]) {
            ASSERT_EQ(visits[std::size_t(m)], 1) << "q-tile " << m << " is direct but has " << visits[std::size_t(m)] << " visitors";
            ASSERT_EQ(direct[std::size_t(m)], 1) << "q-tile " << m;
            ++direct_count;
        } else {
            ASSERT_EQ(direct[std::size_t(m)], 0) << "q-tile " << m << " stored directly, yet not sole";
        }
    }
}

TEST(Sm80BackwardHost, DirectDqTiles) {
    std::mt19937_64 rng(13);
    auto pick = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
    std::int64_t direct_count = 0;
    for (int iter = 0; iter < 1500; ++iter) {
        const std::int64_t sq = pick(0, 700), sk = pick(1, pick(0, 1) ? 150 : 600);
        const int group = int(pick(0, 3) == 0 ? pick(1, 64) : pick(1, 6));
        const int q_tile = 64, kv_tile = pick(0, 1) ? 64 : 128;
        sm80::BackwardParams bp;
        bp.p.group = group;
        bp.p.heads_q = group;
        bp.p.heads_kv = 1;
        const std::int64_t q_tiles = core::num_tiles(sq * group, q_tile);
        bp.chunks.length = pick(0, 1) ? std::int64_t(1) << 40 : pick(1, 6);
        bp.chunks.count = int(std::max<std::int64_t>(1, core::ceil_div(q_tiles, bp.chunks.length)));
        const core::CompressedBand builtin = random_band(pick, 70, 300, 300).for_sequence(sq, sk);
        // Band tensors: non-decreasing edges with flat runs, jumps past a tile, and lo >= hi rows.
        std::vector<std::int64_t> lo(std::size_t(sq) + 1), hi(std::size_t(sq) + 1);
        std::int64_t l = pick(-20, 40), h = l + pick(-30, 60);
        for (std::int64_t i = 0; i < sq; ++i) {
            if (pick(0, 3) == 0) l += pick(0, pick(0, 1) ? 4 : 200);
            if (pick(0, 3) == 0) h += pick(0, pick(0, 1) ? 4 : 200);
            lo[std::size_t(i)] = l;
            hi[std::size_t(i)] = h;
        }
        core::BandRows rows;
        rows.lo = {lo.data(), true, 0, 1};
        rows.hi = {hi.data(), true, 0, 1};
        SCOPED_TRACE(::testing::Message() << "cf " << builtin.compress_factor << " delta " << builtin.diag_offset
                                          << " window " << builtin.window_left << " Sq " << sq << " Sk " << sk
                                          << " group " << group << " kv tile " << kv_tile);
        const std::pair<MaskKind, core::SequenceBand> cases[] = {
            {MaskKind::band, builtin},
            {MaskKind::mask_mod, builtin},
            {MaskKind::band_tensors, core::SequenceBand(core::TensorBand{rows, 0, 0, sk})}};
        for (const auto& [kind, band] : cases) {
            bp.p.mask_kind = kind;
            expect_direct_tiles(bp, band, sq, sk, q_tile, kv_tile, direct_count);
            if (HasFatalFailure()) return;
        }
    }
    EXPECT_GT(direct_count, 1000);  // the direct path is exercised, not only its absence
}

// direct_dq_row, which the preprocess and the conversion ask per (dense row, query head), reads the
// classification of the row's q-tile in its sequence, for every sequence of a varlen batch (empty ones
// included) and of a fixed-length batch.
TEST(Sm80BackwardHost, DirectDqRows) {
    const std::vector<std::int32_t> cu_q = {0, 0, 113, 113, 400, 1203, 1204}, cu_k = {0, 50, 50, 50, 300, 501, 601};
    for (int group : {1, 3, 16})
        for (MaskKind kind : {MaskKind::band, MaskKind::mask_mod})
            for (bool varlen : {true, false}) {
                sm80::BackwardParams bp;
                core::AttnParams& p = bp.p;
                p.mask_kind = kind;
                p.group = group;
                p.heads_kv = 2;
                p.heads_q = 2 * group;
                p.band.causal = true;
                p.band.compress_factor = 4;
                p.band.has_diag_offset = true;
                p.band.diag_offset = -7;
                if (varlen) {
                    p.batch = int(cu_q.size()) - 1;
                    p.cu_seqlens_q = cu_q.data();
                    p.cu_seqlens_k = cu_k.data();
                    p.seqlen_q = 803;
                    p.seqlen_k = 250;
                } else {
                    p.batch = 3;
                    p.seqlen_q = 333;
                    p.seqlen_k = 90;
                }
                const std::int64_t per_sequence = core::num_tiles(p.seqlen_q * group, 64);
                std::vector<std::uint8_t> tiles(std::size_t(p.batch * per_sequence));
                for (int b = 0; b < p.batch; ++b) {
                    const core::Sequence seq = core::sequence(p, b);
                    for (std::int64_t m = 0; m < per_sequence; ++m)
                        tiles[std::size_t(b * per_sequence + m)] =
                            sm80::sole_dq_tile(kind, core::sequence_band(p, b, seq), m, 64, group, seq.seqlen_q, 128);
                }
                bp.direct = {true, 64, 128, tiles.data(), per_sequence};
                int direct = 0;
                for (int b = 0; b < p.batch; ++b) {
                    const core::Sequence seq = core::sequence(p, b);
                    const core::SequenceBand band = core::sequence_band(p, b, seq);
                    const std::int64_t row0 = varlen ? seq.row_q : b * p.seqlen_q;
                    for (std::int64_t i = 0; i < seq.seqlen_q; ++i)
                        for (int h = 0; h < p.heads_q; ++h) {
                            const std::int64_t m = (i * group + h % group) / 64;
                            const bool sole = sm80::sole_dq_tile(kind, band, m, 64, group, seq.seqlen_q, 128);
                            ASSERT_EQ(sm80::direct_dq_row(bp, row0 + i, h), sole)
                                << "sequence " << b << " row " << i << " head " << h;
                            direct += sole;
                        }
                }
                EXPECT_GT(direct, 0) << "group " << group << " kind " << int(kind) << " varlen " << varlen;
            }
}

// Deterministic mode end to end on the host: every CTA of a varlen batch's grid (band or mask_mod,
// chunked or not, kv tiles mapped as the kernels map them) as its sequence of turns (each q-tile's
// dQ, then its chunk's dK / dV), launched in block order onto a GPU that holds only a few CTAs at once
// (the GPU's in-order dispatch): every CTA takes all its turns, whatever the number resident.
TEST(Sm80BackwardHost, DeterministicTurnsNeverDeadlock) {
    std::mt19937_64 rng(13);
    auto pick = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
    constexpr int kQTile = 64, kKvTile = 128;
    for (int iter = 0; iter < 2000; ++iter) {
        const core::BandSpec spec = random_band(pick, 40, 300, 200);
        const int batch = int(pick(1, 3)), group = int(pick(1, 5));
        std::vector<std::int64_t> sq(static_cast<std::size_t>(batch)), sk(static_cast<std::size_t>(batch));
        std::int64_t max_q = 1, max_k = 1;
        for (int b = 0; b < batch; ++b) {
            sq[std::size_t(b)] = pick(0, 700);
            sk[std::size_t(b)] = pick(0, 600);
            max_q = std::max(max_q, sq[std::size_t(b)]);
            max_k = std::max(max_k, sk[std::size_t(b)]);
        }
        sm80::BackwardParams bp;
        bp.p.mask_kind = pick(0, 3) == 0 ? MaskKind::mask_mod : MaskKind::band;
        bp.p.group = group;
        bp.p.heads_q = group;
        bp.p.heads_kv = 1;
        const std::int64_t q_tiles = core::num_tiles(max_q * group, kQTile), kv_tiles = core::num_tiles(max_k, kKvTile);
        bp.chunks.length = pick(1, 5);
        bp.chunks.count = pick(0, 1) ? 1 : int(core::ceil_div(q_tiles, bp.chunks.length));
        if (bp.chunks.count == 1) bp.chunks.length = std::int64_t(1) << 40;
        struct Turn {
            std::size_t counter;
            int rank;
        };
        std::vector<std::vector<Turn>> ctas;  // by linear block index: x (chunk, kv column), then z (batch)
        for (int b = 0; b < batch; ++b)
            for (std::int64_t x = 0; x < kv_tiles * bp.chunks.count; ++x) {
                const int c = int(x / kv_tiles);
                const std::int64_t n = sm80::AddOrder::kv_tile_of(x % kv_tiles, kv_tiles, true);
                std::vector<Turn> turns;
                const std::int64_t s_q = sq[std::size_t(b)], s_k = sk[std::size_t(b)];
                if (n * kKvTile < s_k) {  // else the CTA exits first
                    const sm80::QTileSchedule schedule(bp, spec.for_sequence(s_q, s_k), b, 0, n, c, s_q, s_k, kQTile,
                                                       kKvTile);
                    for (const sm80::QTile& t : walk(schedule))
                        turns.push_back({std::size_t(b * q_tiles + t.m_block), schedule.rank(t)});
                    if (bp.chunks.count > 1) turns.push_back({std::size_t(batch * q_tiles + b * kv_tiles + n), c});
                }
                ctas.push_back(turns);
            }
        std::vector<int> counter(std::size_t(batch * (q_tiles + kv_tiles)), 0);
        const std::size_t slots = std::size_t(pick(1, 8));
        std::vector<std::size_t> done(ctas.size(), 0), resident;
        std::size_t launched = 0;
        while (launched < ctas.size() || !resident.empty()) {
            while (resident.size() < slots && launched < ctas.size()) resident.push_back(launched++);
            bool progress = false;
            for (std::size_t k = 0; k < resident.size();) {
                const std::size_t id = resident[k];
                for (; done[id] < ctas[id].size() && counter[ctas[id][done[id]].counter] == ctas[id][done[id]].rank;
                     ++done[id], progress = true)
                    ++counter[ctas[id][done[id]].counter];
                if (done[id] == ctas[id].size()) {
                    resident.erase(resident.begin() + std::ptrdiff_t(k));
                    progress = true;
                } else {
                    ++k;
                }
            }
            ASSERT_TRUE(progress) << "deadlock with " << slots << " resident CTAs, iteration " << iter;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GPU checks


// The backward kernel families under test.
enum class Family { sm80, sm90 };

const char* family_name(Family f) { return f == Family::sm80 ? "sm80" : "sm90"; }

// That family's backward itself, whatever the backend dispatch would pick on this device.
Status family_backward(Family f, const core::AttnParams& p) {
    Status s = f == Family::sm80 ? sm80::backward(p) : sm90::backward(p);
    if (!s.ok()) return s;
    return cuda::cuda_status(cudaDeviceSynchronize(), family_name(f));
}

Status kernel_backward(Family f, const AttnTensors& t, const Mask& mask, std::optional<float> scale,
                       bool deterministic = false, cudaStream_t stream = nullptr) {
    BackwardArgs a = backward_args(t, mask, Device::cuda);
    a.scale = scale;
    a.deterministic = deterministic;
    a.stream = stream;
    core::AttnParams p;
    Status s = api::fill_backward_params(a, host_seqlens(t), p);
    if (!s.ok()) return s;
    return family_backward(f, p);
}

// out and lse from the CUDA forward (the inputs the backward is given in training), downloaded.
void cuda_forward(AttnTensors& t, const Mask& band, std::optional<float> scale) {
    ForwardArgs a = forward_args(t, band, Device::cuda);
    a.scale = scale;
    Status s = forward(a);
    if (s.ok()) s = cuda::cuda_status(cudaDeviceSynchronize(), "cuda forward");
    if (!s.ok()) throw std::runtime_error("cuda forward: " + s.to_string());
    t.out.download();
    t.lse.download();
}

struct SeqShape {
    std::int64_t seqlen_q, seqlen_k, row_q, row_k;  // row_*: first dense row
};
std::vector<SeqShape> sequences(const Problem& pr) {
    std::vector<SeqShape> seqs;
    for (int b = 0; b < pr.num_seqs(); ++b) {
        if (pr.varlen()) {
            seqs.push_back({pr.cu_seqlens_q[b + 1] - pr.cu_seqlens_q[b], pr.cu_seqlens_k[b + 1] - pr.cu_seqlens_k[b],
                            pr.cu_seqlens_q[b], pr.cu_seqlens_k[b]});
        } else {
            seqs.push_back({pr.seqlen_q, pr.seqlen_k, b * pr.seqlen_q, b * pr.seqlen_k});
        }
    }
    return seqs;
}

// Dense rows whose gradient is exactly zero by structure, under the built-in band.
ZeroRows zero_rows(const Problem& pr, const Mask& band) { return zero_rows(pr, builtin_edge_rows(lengths(pr), band)); }

enum class Mechanism { band, mask_mod, block_sparse, block_sparse_per_head };
const char* mechanism_name(Mechanism m) {
    switch (m) {
        case Mechanism::band: return "band";
        case Mechanism::mask_mod: return "mask_mod";
        case Mechanism::block_sparse: return "block_sparse";
        case Mechanism::block_sparse_per_head: return "block_sparse_per_head";
    }
    return "?";
}

// Block-sparse lists of the band's tile classification at tile_m x tile_n (core::classify per sequence),
// on the device. Shared by all heads, or (per_head) one list per query head where odd heads list their
// full tiles as partial: the same visible set through the per-element path.
Mask classified_block_sparse_mask(const Mask& band, const Problem& pr, std::int64_t tile_m, std::int64_t tile_n,
                                  bool per_head, DeviceBlockSparse& lists) {
    const std::vector<SeqShape> seqs = sequences(pr);
    std::int64_t max_q = 0, max_k = 0;
    for (const SeqShape& s : seqs) {
        max_q = std::max(max_q, s.seqlen_q);
        max_k = std::max(max_k, s.seqlen_k);
    }
    const int batch = int(seqs.size()), heads = per_head ? pr.heads_q : 1;
    const std::int64_t q_tiles = core::num_tiles(max_q, tile_m), slots = std::max<std::int64_t>(1, core::num_tiles(max_k, tile_n));
    lists.full_count = make_tensor(DType::int32, {batch, heads, q_tiles});
    lists.partial_count = make_tensor(DType::int32, {batch, heads, q_tiles});
    lists.full_index = make_tensor(DType::int32, {batch, heads, q_tiles, slots});
    lists.partial_index = make_tensor(DType::int32, {batch, heads, q_tiles, slots});
    for (TestTensor* x : {&lists.full_count, &lists.partial_count, &lists.full_index, &lists.partial_index})
        std::fill(x->host.begin(), x->host.end(), 0);
    for (int b = 0; b < batch; ++b) {
        const core::CompressedBand bd = api::band_spec(band).for_sequence(seqs[std::size_t(b)].seqlen_q, seqs[std::size_t(b)].seqlen_k);
        for (int h = 0; h < heads; ++h)
            for (std::int64_t t = 0; t < core::num_tiles(seqs[std::size_t(b)].seqlen_q, tile_m); ++t) {
                const core::RowSpan span = core::query_span(t, tile_m, 1, seqs[std::size_t(b)].seqlen_q);
                std::int64_t n_full = 0, n_partial = 0;
                for (std::int64_t kt = 0; kt < core::num_tiles(seqs[std::size_t(b)].seqlen_k, tile_n); ++kt) {
                    const core::TileKind kind = core::classify(bd, span, kt * tile_n, tile_n);
                    if (kind == core::TileKind::skip) continue;
                    const bool full = kind == core::TileKind::full && h % 2 == 0;
                    TestTensor& index = full ? lists.full_index : lists.partial_index;
                    const std::int64_t at[4] = {b, h, t, full ? n_full++ : n_partial++};
                    index.set(index.offset(at), double(kt));
                }
                const std::int64_t at[3] = {b, h, t};
                lists.full_count.set(lists.full_count.offset(at), double(n_full));
                lists.partial_count.set(lists.partial_count.offset(at), double(n_partial));
            }
    }
    for (TestTensor* x : {&lists.full_count, &lists.partial_count, &lists.full_index, &lists.partial_index}) x->upload();
    return device_block_sparse_mask(band, tile_m, tile_n, lists);
}

// The block-sparse tiles of the CUDA forward (what a user's lists describe), which the backward accepts.
void forward_sparse_tiles(const Problem& pr, std::int64_t& tile_m, std::int64_t& tile_n) {
    const Status s = cuda_block_sparse_tiles(pr.dim_qk, pr.dim_v, pr.dtype, tile_m, tile_n);
    if (!s.ok()) throw std::runtime_error("cuda_block_sparse_tiles: " + s.to_string());
}

Mask mechanism_mask(const Mask& band, Mechanism m, const Problem& pr, DeviceBlockSparse& lists) {
    if (m == Mechanism::band) return band;
    if (m == Mechanism::mask_mod) {
        Mask g = band;
        g.kind = MaskKind::mask_mod;
        return g;
    }
    std::int64_t tm = 0, tn = 0;
    forward_sparse_tiles(pr, tm, tn);
    return classified_block_sparse_mask(band, pr, tm, tn, m == Mechanism::block_sparse_per_head, lists);
}

void poison_grads(AttnTensors& t) {
    for (TestTensor* x : {&t.dq, &t.dk, &t.dv}) {
        x->poison();
        x->upload();
    }
    // A copy from pageable memory may return before it lands; a backward on a non-blocking stream would
    // not wait for it (seen once under load: dv of a later run partly poisoned).
    cuda_check(cudaDeviceSynchronize(), "poison");
}

// The CPU backend's gradients for the same inputs (out and lse included), as dense vectors.
struct CpuGrads {
    std::vector<double> dq, dk, dv;
};
CpuGrads cpu_backward(const AttnTensors& t, const Mask& band, std::optional<float> scale) {
    auto like = [](const TestTensor& x) {
        return make_tensor(x.dtype, std::vector<std::int64_t>(x.shape, x.shape + x.rank), 0, false);
    };
    TestTensor dq = like(t.dq), dk = like(t.dk), dv = like(t.dv);
    BackwardArgs a = backward_args(t, band, Device::cpu);
    a.dq = dq.view(Device::cpu);
    a.dk = dk.view(Device::cpu);
    a.dv = dv.view(Device::cpu);
    a.scale = scale;
    const Status s = backward(a);
    if (!s.ok()) throw std::runtime_error("cpu backend backward: " + s.to_string());
    return {dense(dq), dense(dk), dense(dv)};
}

struct Options {
    std::optional<float> scale;
    std::vector<Mechanism> mechanisms = {Mechanism::band, Mechanism::mask_mod, Mechanism::block_sparse};
    bool cpu_backend = false;
};

// One set of random inputs: the CUDA forward's out and lse, then family f's backward through each
// mechanism encoding `band`, each checked against the fp64 oracle of the band (and the band run against
// the CPU backend), with nothing written outside the gradient views.
void check_backward(Family f, const Problem& pr, const Mask& band, const Options& opt) {
    AttnTensors t = make_forward_tensors(pr);
    add_backward_tensors(pr, t);
    cuda_forward(t, band, opt.scale);
    const cpu::Reference ref = reference(t, band, true, opt.scale);
    const ZeroRows zero = zero_rows(pr, band);
    const Tolerance tol = grad_tolerance(pr.dtype);
    for (Mechanism m : opt.mechanisms) {
        SCOPED_TRACE(mechanism_name(m));
        poison_grads(t);
        DeviceBlockSparse lists;
        ASSERT_TRUE(run_ok(kernel_backward(f, t, mechanism_mask(band, m, pr, lists), opt.scale)));
        for (TestTensor* x : {&t.dq, &t.dk, &t.dv}) x->download();
        EXPECT_TRUE(grad_close(t.dq, ref.dq, zero.q, tol, "dq"));
        EXPECT_TRUE(grad_close(t.dk, ref.dk, zero.k, tol, "dk"));
        EXPECT_TRUE(grad_close(t.dv, ref.dv, zero.k, tol, "dv"));
        EXPECT_TRUE(untouched_outside_view(t.dq, "dq"));
        EXPECT_TRUE(untouched_outside_view(t.dk, "dk"));
        EXPECT_TRUE(untouched_outside_view(t.dv, "dv"));
        if (m == Mechanism::band && opt.cpu_backend) {
            const CpuGrads cpu = cpu_backward(t, band, opt.scale);
            const Tolerance twice{2 * tol.elem, 2 * tol.l2};
            EXPECT_TRUE(grad_close(t.dq, cpu.dq, zero.q, twice, "dq vs cpu backend"));
            EXPECT_TRUE(grad_close(t.dk, cpu.dk, zero.k, twice, "dk vs cpu backend"));
            EXPECT_TRUE(grad_close(t.dv, cpu.dv, zero.k, twice, "dv vs cpu backend"));
        }
    }
}

// A kernel family and the config (head dims, dtype) it runs.
struct BackwardConfig {
    Config config;
    Family family;
};

// Every config on both kernels (the sm90 kernel has every head-dim pair: sm90::kBackwardTiles).
std::vector<BackwardConfig> backward_configs() {
    std::vector<BackwardConfig> c;
    for (const Config& k : all_configs()) {
        c.push_back({k, Family::sm80});
        c.push_back({k, Family::sm90});
    }
    return c;
}

std::string backward_config_name(const ::testing::TestParamInfo<BackwardConfig>& info) {
    return config_name({info.param.config, info.index}) + "_" + family_name(info.param.family);
}

class CudaBackward : public ::testing::TestWithParam<BackwardConfig> {
  protected:
    void SetUp() override {
        if (!device_is_sm80_or_newer()) GTEST_SKIP() << "needs a CUDA device of compute capability 8.0 or newer";
        if (GetParam().family == Family::sm90 && !device_is_sm90()) GTEST_SKIP() << "needs a compute capability 9.0 device";
    }
    Problem problem(std::int64_t sq, std::int64_t sk, int hq = 2, int hkv = 1, int batch = 1) const {
        return config_problem(GetParam().config, sq, sk, hq, hkv, batch, 5);
    }
    void check_backward(const Problem& pr, const Mask& band, const Options& opt = {}) const {
        ccattn::check_backward(GetParam().family, pr, band, opt);
    }
    Status kernel_backward(const AttnTensors& t, const Mask& mask, std::optional<float> scale,
                           bool deterministic = false) const {
        return ccattn::kernel_backward(GetParam().family, t, mask, scale, deterministic);
    }
};

const Options kBandOnly{{}, {Mechanism::band}, false};

TEST_P(CudaBackward, CausalSquare) {
    Options opt;
    opt.cpu_backend = true;
    check_backward(problem(157, 157, 4, 2, 2), Mask::band(true), opt);
}

TEST_P(CudaBackward, CausalBottomRight) {
    check_backward(problem(113, 301), Mask::band(true), kBandOnly);  // delta = Sk - Sq = 188
    check_backward(problem(301, 113), Mask::band(true), kBandOnly);  // delta = -188: rows 0..187 empty
}

TEST_P(CudaBackward, Compressed) {
    // cf 4, 16, 64 with odd lengths; the last keys are seen by no row (zero dk, dv).
    check_backward(problem(517, 133, 2, 1), Mask::band(true, 4));
    check_backward(problem(517, 37, 2, 1), Mask::band(true, 16), kBandOnly);
    check_backward(problem(1001, 19, 2, 1), Mask::band(true, 64), kBandOnly);
}

TEST_P(CudaBackward, NegativeDelta) {
    // NSA compression blocks of 32, stride 16 (j*16 + 31 <= i): rows 0..30 see nothing.
    check_backward(problem(400, 30, 2, 1), Mask::band(true, 16, -31));
}

// The largest cf, window and offsets validation accepts, through every mechanism.
TEST_P(CudaBackward, BandsAtTheValidationBounds) {
    for (const BoundBand& b : bands_at_validation_bounds()) {
        SCOPED_TRACE(::testing::Message() << "cf " << b.cf << " delta " << b.delta << " causal " << b.causal
                                          << " window " << b.window.value_or(-1));
        check_backward(problem(203, 113), Mask::band(b.causal, b.cf, b.delta, b.window));
    }
}

// The backward of rows made NaN by non-finite inputs (docs/decisions.md 13): NaN in their dq and in
// the dk, dv of every key they see (other gradients of the tiles they share may be NaN too).
TEST_P(CudaBackward, NonFiniteInputs) {
    const Config& c = GetParam().config;
    const Problem pr = non_finite_problem(c.dim_qk, c.dim_v, c.dtype);
    const Mask band = non_finite_band();
    AttnTensors t = make_forward_tensors(pr);
    add_backward_tensors(pr, t);
    plant(t, Planted::nan_and_inf);
    cuda_forward(t, band, {});
    for (Mechanism m : {Mechanism::band, Mechanism::mask_mod, Mechanism::block_sparse}) {
        SCOPED_TRACE(mechanism_name(m));
        poison_grads(t);
        DeviceBlockSparse lists;
        ASSERT_TRUE(run_ok(kernel_backward(t, mechanism_mask(band, m, pr, lists), {})));
        for (TestTensor* x : {&t.dq, &t.dk, &t.dv}) x->download();
        // Rows 30 (head 1), 60 (head 0) and 100.. (both heads, they see key 40) are NaN; row 149
        // sees keys 0..64.
        EXPECT_TRUE(std::isnan(t.dq.get(at(t.dq, 30, 1, 0))));
        EXPECT_TRUE(std::isnan(t.dq.get(at(t.dq, 60, 0, 0))));
        for (std::int64_t i = 100; i < 150; ++i)
            for (int h = 0; h < 2; ++h) EXPECT_TRUE(std::isnan(t.dq.get(at(t.dq, i, h, 0)))) << "dq row " << i;
        for (std::int64_t j = 0; j < 65; ++j) {
            EXPECT_TRUE(std::isnan(t.dk.get(at(t.dk, j, 0, 0)))) << "dk key " << j;
            EXPECT_TRUE(std::isnan(t.dv.get(at(t.dv, j, 0, 0)))) << "dv key " << j;
        }
    }
}

TEST_P(CudaBackward, PositiveDelta) {
    check_backward(problem(203, 113), Mask::band(true, 4, 50), kBandOnly);
    check_backward(problem(100, 300), Mask::band(true, 1, 37), kBandOnly);  // chunked prefill shard
}

TEST_P(CudaBackward, Windows) {
    check_backward(problem(333, 333), Mask::band(true, 1, {}, 64));
    check_backward(problem(400, 110, 2, 2), Mask::band(true, 4, 3, 8), kBandOnly);
    check_backward(problem(203, 113), Mask::band(false, 2, {}, 20), kBandOnly);  // left edge only
}

TEST_P(CudaBackward, NonCausal) { check_backward(problem(70, 203, 3, 1), Mask::none()); }

TEST_P(CudaBackward, EmptyRowsAndTiles) {
    check_backward(problem(700, 700), Mask::band(true, 1, -500), kBandOnly);  // whole q-tiles of empty rows
    check_backward(problem(300, 80), Mask::band(true, 4, -1000), kBandOnly);  // every row empty: all zero
}

TEST_P(CudaBackward, Varlen) {
    Problem pr = problem(0, 0, 4, 2);
    // Sequences: keys but no queries (dk = dv = 0); queries but no keys (dq = 0); no rows at all; two
    // ordinary ones.
    pr.cu_seqlens_q = {0, 0, 113, 113, 400, 1203};
    pr.cu_seqlens_k = {0, 50, 50, 50, 300, 501};
    check_backward(pr, Mask::band(true, 4));
    check_backward(pr, Mask::band(true), kBandOnly);  // per-sequence bottom-right delta
}

TEST_P(CudaBackward, GqaGroups) {
    for (int group : {1, 2, 3, 4, 5, 8, 16, 32, 64}) {  // 3 and 5 do not divide the 64-row q-tile
        SCOPED_TRACE("group " + std::to_string(group));
        check_backward(problem(150, 75, 2 * group, 2), Mask::band(true, 2), kBandOnly);
    }
    check_backward(problem(203, 51, 16, 1), Mask::band(true, 4));  // MQA, G = 16, all mechanisms
}

TEST_P(CudaBackward, StridedTensors) {
    Problem pr = problem(203, 51, 4, 2, 2);
    pr.pad = 8;
    check_backward(pr, Mask::band(true, 4));
    Problem vl = problem(0, 0, 2, 1);
    vl.cu_seqlens_q = {0, 77, 300};
    vl.cu_seqlens_k = {0, 20, 100};
    vl.pad = 24;
    check_backward(vl, Mask::band(true, 4, -3, 9));
}

TEST_P(CudaBackward, Scales) {
    Options opt;
    opt.scale = 0.05f;
    check_backward(problem(130, 70), Mask::band(true, 2), opt);
    opt.scale = -0.2f;
    check_backward(problem(130, 70), Mask::band(true, 2), opt);
}

TEST_P(CudaBackward, BlockSparseListsOfOtherTileSizes) {
    Options opt;
    opt.mechanisms = {Mechanism::block_sparse_per_head};
    check_backward(problem(333, 90, 4, 2), Mask::band(true, 4, {}, 10), opt);
    // Lists whose tiles hold several kernel tiles, straddle kernel kv-tiles, or split them.
    const Problem pr = problem(600, 600, 2, 1);
    const Mask band = Mask::band(true, 1, {}, 200);
    AttnTensors t = make_forward_tensors(pr);
    add_backward_tensors(pr, t);
    cuda_forward(t, band, {});
    const cpu::Reference ref = reference(t, band, true);
    const ZeroRows zero = zero_rows(pr, band);
    for (auto [tm, tn] : {std::pair<std::int64_t, std::int64_t>{256, 256}, {128, 176}, {192, 48}}) {
        SCOPED_TRACE("lists of " + std::to_string(tm) + " x " + std::to_string(tn));
        DeviceBlockSparse lists;
        poison_grads(t);
        ASSERT_TRUE(run_ok(kernel_backward(t, classified_block_sparse_mask(band, pr, tm, tn, false, lists), {})));
        for (TestTensor* x : {&t.dq, &t.dk, &t.dv}) x->download();
        EXPECT_TRUE(grad_close(t.dq, ref.dq, zero.q, grad_tolerance(pr.dtype), "dq"));
        EXPECT_TRUE(grad_close(t.dk, ref.dk, zero.k, grad_tolerance(pr.dtype), "dk"));
        EXPECT_TRUE(grad_close(t.dv, ref.dv, zero.k, grad_tolerance(pr.dtype), "dv"));
    }
}

TEST_P(CudaBackward, LongCausal) {
    // Many q-tiles per CTA (double-buffered prefetch), many CTAs accumulating each dQ row.
    check_backward(problem(1100, 1100, 1, 1), Mask::band(true), kBandOnly);
}

// The q-range chunks the backward picks for a problem under the band (QChunks).
sm80::QChunks chunks_for(const Problem& pr, const Mask& band) {
    AttnTensors t = make_forward_tensors(pr);
    add_backward_tensors(pr, t);
    core::AttnParams p;
    const Status s = api::fill_backward_params(backward_args(t, band, Device::cuda), host_seqlens(t), p);
    if (!s.ok()) throw std::runtime_error("fill_backward_params: " + s.to_string());
    sm80::BackwardTile tile;
    if (!sm80::backward_tile_for(p.dim_qk, p.dim_v, tile)) throw std::runtime_error("no backward tile");
    int device = 0, sms = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    return sm80::q_chunks(p, tile.kernel_tiles(), sm80::SparseBits{}, sms);
}

// Few kv-tiles and a long q range (compressed keys): the range is cut into chunks whose CTAs add their
// dK, dV into fp32 accumulators; a short range runs whole (dK, dV written by the one CTA).
TEST_P(CudaBackward, ChunkedQRange) {
    const Mask nsa = Mask::band(true, 16, -31);
    const Problem chunked = problem(2100, 130, 8, 2);
    EXPECT_GT(chunks_for(chunked, nsa).count, 1);
    check_backward(chunked, nsa);
    const Problem whole = problem(157, 157, 4, 2, 2);
    EXPECT_EQ(chunks_for(whole, Mask::band(true)).count, 1);
}

// Spins for about `cycles` clocks. Blocks of 1024 threads leave no room for a backward CTA on their
// SM, so a backward launched beside them starts its CTAs on other SMs, in another interleaving, and
// with fewer of them resident at once.
__global__ void occupy_sms(long long cycles) {
    const long long start = clock64();
    while (clock64() - start < cycles) {
    }
}

// Deterministic mode: three runs (the default stream; another stream; another stream while a kernel
// holds half the SMs) give bitwise-identical dq, dk, dv, within the oracle's bounds (unless `oracle`
// is false: shapes too large for it).
void check_deterministic(Family f, const Problem& pr, const Mask& band, Mechanism m, bool oracle = true) {
    AttnTensors t = make_forward_tensors(pr);
    add_backward_tensors(pr, t);
    cuda_forward(t, band, {});
    const Tolerance tol = grad_tolerance(pr.dtype);
    int device = 0, sms = 0;
    ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
    ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), cudaSuccess);
    cudaStream_t side = nullptr, busy = nullptr;
    ASSERT_EQ(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaStreamCreateWithFlags(&busy, cudaStreamNonBlocking), cudaSuccess);
    std::vector<unsigned char> first[3];
    DeviceBlockSparse lists;
    const Mask mask = mechanism_mask(band, m, pr, lists);
    for (int run = 0; run < 3; ++run) {
        SCOPED_TRACE("run " + std::to_string(run));
        poison_grads(t);
        if (run == 2) occupy_sms<<<std::max(1, sms / 2), 1024, 0, busy>>>(20'000'000);
        ASSERT_TRUE(run_ok(kernel_backward(f, t, mask, {}, true, run == 0 ? nullptr : side)));
        TestTensor* grads[3] = {&t.dq, &t.dk, &t.dv};
        const char* names[3] = {"dq", "dk", "dv"};
        for (int g = 0; g < 3; ++g) {
            grads[g]->download();
            if (run == 0) first[g] = grads[g]->host;
            else EXPECT_TRUE(grads[g]->host == first[g]) << names[g] << " differs from run 0";
        }
        if (run > 0 || !oracle) continue;
        const cpu::Reference ref = reference(t, band, true);
        const ZeroRows zero = zero_rows(pr, band);
        EXPECT_TRUE(grad_close(t.dq, ref.dq, zero.q, tol, "dq"));
        EXPECT_TRUE(grad_close(t.dk, ref.dk, zero.k, tol, "dk"));
        EXPECT_TRUE(grad_close(t.dv, ref.dv, zero.k, tol, "dv"));
    }
    EXPECT_EQ(cudaStreamSynchronize(busy), cudaSuccess);
    cudaStreamDestroy(side);
    cudaStreamDestroy(busy);
}

TEST_P(CudaBackward, DeterministicCausalAndWindows) {
    const Family f = GetParam().family;
    check_deterministic(f, problem(1100, 1100, 1, 1), Mask::band(true), Mechanism::band);  // many adders per q-tile
    check_deterministic(f, problem(157, 157, 4, 2, 2), Mask::band(true), Mechanism::band);
    check_deterministic(f, problem(700, 700), Mask::band(true, 1, {}, 64), Mechanism::band);
    check_deterministic(f, problem(700, 700), Mask::band(true, 1, -500), Mechanism::band);  // empty q-tiles
    check_deterministic(f, problem(400, 110, 2, 2), Mask::band(true, 4, 3, 8), Mechanism::mask_mod);
    // 128 CTAs: with half the SMs held by run 2's spinning kernel they are not all resident at once.
    check_deterministic(f, problem(1024, 1024, 8, 8, 2), Mask::band(true), Mechanism::band, false);
}

TEST_P(CudaBackward, DeterministicCompressedChunks) {
    // Few keys, a long q range: chunks whose CTAs add dK, dV (and dQ) in turn.
    const Mask band = Mask::band(true, 32);
    const Problem pr = problem(4096, 128, 8, 2);
    EXPECT_GT(chunks_for(pr, band).count, 1);
    check_deterministic(GetParam().family, pr, band, Mechanism::band);
    check_deterministic(GetParam().family, problem(2100, 130, 8, 2), Mask::band(true, 16, -31), Mechanism::mask_mod);
}

TEST_P(CudaBackward, DeterministicGqaAndVarlen) {
    const Family f = GetParam().family;
    for (int group : {3, 16})  // 3 does not divide the q-tile (no TMA rows on sm90)
        check_deterministic(f, problem(300, 150, 2 * group, 2), Mask::band(true, 2), Mechanism::band);
    Problem pr = problem(0, 0, 4, 2);
    pr.cu_seqlens_q = {0, 0, 113, 113, 400, 1203};
    pr.cu_seqlens_k = {0, 50, 50, 50, 300, 501};
    check_deterministic(f, pr, Mask::band(true, 4), Mechanism::band);
    check_deterministic(f, pr, Mask::band(true), Mechanism::band);
}

// Block-sparse lists have no deterministic CUDA backward: refused, naming the option, nothing written.
TEST_P(CudaBackward, DeterministicRefusesBlockSparse) {
    const Problem pr = problem(300, 300);
    AttnTensors t = make_forward_tensors(pr);
    add_backward_tensors(pr, t);
    cuda_forward(t, Mask::band(true), {});
    poison_grads(t);
    DeviceBlockSparse lists;
    const Status s = kernel_backward(t, mechanism_mask(Mask::band(true), Mechanism::block_sparse, pr, lists), {}, true);
    EXPECT_EQ(s.code, Code::unsupported) << s.to_string();
    EXPECT_EQ(s.argument, "deterministic");
    for (TestTensor* x : {&t.dq, &t.dk, &t.dv}) {
        x->download();
        EXPECT_TRUE(all_poisoned(*x));
    }
}

// Small shapes that still cover unmasked and masked tiles, GQA packing with a group that does not
// divide the tile, varlen with empty sequences and block-sparse lists: the subset to run under
// compute-sanitizer (--gtest_filter='*SanitizerSmall*').
TEST_P(CudaBackward, SanitizerSmall) {
    Problem pr = problem(0, 0, 6, 2);
    pr.cu_seqlens_q = {0, 70, 70, 267, 267};
    pr.cu_seqlens_k = {0, 33, 40, 140, 150};
    Options opt;
    opt.mechanisms = {Mechanism::band, Mechanism::mask_mod, Mechanism::block_sparse, Mechanism::block_sparse_per_head};
    check_backward(pr, Mask::band(true, 2, -1, 40), opt);
}

INSTANTIATE_TEST_SUITE_P(Configs, CudaBackward, ::testing::ValuesIn(backward_configs()), backward_config_name);

// ---------------------------------------------------------------------------------------------
// Errors: rejected before any kernel runs, nothing written.

TEST(Sm80BackwardErrors, BlockSparseTilesMustFitTheKernel) {
    CCATTN_REQUIRE_SM80();
    Problem pr;
    pr.seqlen_q = pr.seqlen_k = 300;
    pr.dim_qk = pr.dim_v = 128;  // backward tiles 64 x 128
    AttnTensors t = make_forward_tensors(pr);
    add_backward_tensors(pr, t);
    cuda_forward(t, Mask::band(true), {});
    struct Case {
        std::int64_t tile_m, tile_n;
        const char* argument;
    };
    for (const Case& c : {Case{32, 128, "mask.block_sparse.tile_m"}, Case{96, 128, "mask.block_sparse.tile_m"},
                          Case{128, 4, "mask.block_sparse.tile_n"}, Case{128, 1, "mask.block_sparse.tile_n"}}) {
        SCOPED_TRACE(std::to_string(c.tile_m) + " x " + std::to_string(c.tile_n));
        poison_grads(t);
        DeviceBlockSparse lists;
        const Status s =
            kernel_backward(Family::sm80, t, classified_block_sparse_mask(Mask::band(true), pr, c.tile_m, c.tile_n, false, lists), {});
        EXPECT_EQ(s.code, Code::invalid_argument) << s.to_string();
        EXPECT_EQ(s.argument, c.argument);
        for (TestTensor* x : {&t.dq, &t.dk, &t.dv}) {
            x->download();
            EXPECT_TRUE(all_poisoned(*x));
        }
    }
}

TEST(Sm80BackwardErrors, UnalignedRowsRejectedByTheBackend) {
    CCATTN_REQUIRE_SM80();
    Problem pr;
    pr.seqlen_q = pr.seqlen_k = 64;
    pr.heads_q = pr.heads_kv = 2;
    pr.pad = 4;  // row / head strides not multiples of 8 elements
    AttnTensors t = make_forward_tensors(pr);
    add_backward_tensors(pr, t);
    const Status s = backward(backward_args(t, Mask::band(true), Device::cuda));
    EXPECT_EQ(s.code, Code::invalid_argument) << s.to_string();
    EXPECT_EQ(s.argument, "q");
    for (TestTensor* x : {&t.dq, &t.dk, &t.dv}) {
        x->download();
        EXPECT_TRUE(all_poisoned(*x));
    }
}

// ---------------------------------------------------------------------------------------------
// 64-bit offsets: q, out, dout, dq and the interleaved k/v and dk/dv buffers each hold more than 2^31
// elements; a few query rows and keys (the last ones at offsets beyond 2^31) are checked against an
// fp64 reference computed here from the downloaded rows.

__global__ void fill_uniform_bf16(__nv_bfloat16* x, std::int64_t n, std::uint64_t seed) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
        std::uint64_t h = seed + std::uint64_t(i) * 0x9E3779B97F4A7C15ull;  // splitmix64
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
        h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
        h ^= h >> 31;
        x[i] = __float2bfloat16_rn(float(h >> 40) * (2.f / 16777216.f) - 1.f);
    }
}

// Rows [row0, row1) of a [S, width] bf16 device buffer, in fp64.
std::vector<double> download_rows(const DeviceBuffer& buf, std::int64_t width, std::int64_t row0, std::int64_t row1) {
    std::vector<std::uint16_t> h(std::size_t((row1 - row0) * width));
    cuda_check(cudaMemcpy(h.data(), static_cast<const std::uint16_t*>(buf.data()) + row0 * width, h.size() * 2,
                          cudaMemcpyDeviceToHost),
               "download rows");
    std::vector<double> d(h.size());
    for (std::size_t e = 0; e < h.size(); ++e) d[e] = core::bf16_to_float(h[e]);
    return d;
}

class CudaBackwardLarge : public ::testing::TestWithParam<Family> {
  protected:
    void SetUp() override {
        if (!device_is_sm80_or_newer()) GTEST_SKIP() << "needs a CUDA device of compute capability 8.0 or newer";
        if (GetParam() == Family::sm90 && !device_is_sm90()) GTEST_SKIP() << "needs a compute capability 9.0 device";
    }
};

TEST_P(CudaBackwardLarge, OffsetsBeyond32Bits) {
    constexpr std::int64_t S = 1100000;
    constexpr int Hq = 16, Hkv = 8, G = Hq / Hkv, D = 128, W = 63;
    static_assert((S - 1) * Hq * D > (std::int64_t(1) << 31) && (S - 1) * 2 * Hkv * D > (std::int64_t(1) << 31));
    std::size_t free_bytes = 0, total_bytes = 0;
    cuda_check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    if (free_bytes < (std::size_t(48) << 30)) GTEST_SKIP() << "needs 48 GiB of free device memory";

    const std::int64_t q_elems = S * Hq * D, kv_elems = S * 2 * Hkv * D;
    DeviceBuffer q(std::size_t(q_elems) * 2), kv(std::size_t(kv_elems) * 2), out(std::size_t(q_elems) * 2),
        dout(std::size_t(q_elems) * 2), dq(std::size_t(q_elems) * 2), dkv(std::size_t(kv_elems) * 2),
        lse(std::size_t(Hq * S) * 4);
    fill_uniform_bf16<<<4096, 256>>>(static_cast<__nv_bfloat16*>(q.data()), q_elems, 1);
    fill_uniform_bf16<<<4096, 256>>>(static_cast<__nv_bfloat16*>(kv.data()), kv_elems, 2);
    fill_uniform_bf16<<<4096, 256>>>(static_cast<__nv_bfloat16*>(dout.data()), q_elems, 3);
    cuda_check(cudaMemset(dq.data(), 0xFF, dq.bytes()), "poison dq");
    cuda_check(cudaMemset(dkv.data(), 0xFF, dkv.bytes()), "poison dk, dv");

    // k and v (and dk and dv) interleaved per row: [S, 2, Hkv, D], so each has row stride 2 * Hkv * D.
    auto interleaved = [&](const DeviceBuffer& buf, int which) {
        Tensor t = Tensor::contiguous(static_cast<std::uint16_t*>(buf.data()) + which * Hkv * D, DType::bf16,
                                      {1, S, Hkv, D}, Device::cuda);
        t.stride[0] = S * 2 * Hkv * D;
        t.stride[1] = 2 * Hkv * D;
        return t;
    };
    const Mask mask = Mask::band(true, 1, {}, W);
    ForwardArgs f;
    f.q = Tensor::contiguous(q.data(), DType::bf16, {1, S, Hq, D}, Device::cuda);
    f.k = interleaved(kv, 0);
    f.v = interleaved(kv, 1);
    f.out = Tensor::contiguous(out.data(), DType::bf16, {1, S, Hq, D}, Device::cuda);
    f.lse = Tensor::contiguous(lse.data(), DType::fp32, {1, Hq, S}, Device::cuda);
    f.mask = mask;
    f.backend = Backend::cuda;
    ASSERT_TRUE(run_ok(forward(f)));
    BackwardArgs a;
    a.q = f.q;
    a.k = f.k;
    a.v = f.v;
    a.out = f.out;
    a.lse = f.lse;
    a.dout = Tensor::contiguous(dout.data(), DType::bf16, {1, S, Hq, D}, Device::cuda);
    a.dq = Tensor::contiguous(dq.data(), DType::bf16, {1, S, Hq, D}, Device::cuda);
    a.dk = interleaved(dkv, 0);
    a.dv = interleaved(dkv, 1);
    a.mask = mask;
    core::AttnParams p;
    ASSERT_TRUE(run_ok(api::fill_backward_params(a, {}, p)));
    ASSERT_TRUE(run_ok(family_backward(GetParam(), p)));

    // fp64 reference over query rows [r0, r1): every row's window lies in keys [r0 - W, r1).
    const double scale = 1.0 / std::sqrt(double(D));
    struct Window {
        std::int64_t r0, r1, k0;
        std::vector<double> q, dout, kv;
        double qv(std::int64_t i, int h, int e) const { return q[std::size_t(((i - r0) * Hq + h) * D + e)]; }
        double dov(std::int64_t i, int h, int e) const { return dout[std::size_t(((i - r0) * Hq + h) * D + e)]; }
        double kvv(std::int64_t j, int which, int hk, int e) const {
            return kv[std::size_t((((j - k0) * 2 + which) * Hkv + hk) * D + e)];
        }
    };
    auto window = [&](std::int64_t r0, std::int64_t r1) {
        Window w;
        w.r0 = r0;
        w.r1 = r1;
        w.k0 = std::max<std::int64_t>(0, r0 - W);
        w.q = download_rows(q, Hq * D, r0, r1);
        w.dout = download_rows(dout, Hq * D, r0, r1);
        w.kv = download_rows(kv, 2 * Hkv * D, w.k0, r1);
        return w;
    };
    // P (row i, head h, keys lo..i) and dS for one row, from its own window.
    auto row_grads = [&](const Window& w, std::int64_t i, int h, std::vector<double>& prob, std::vector<double>& ds) {
        const int hk = h / G;
        const std::int64_t lo = std::max<std::int64_t>(0, i - W);
        prob.assign(std::size_t(i + 1 - lo), 0.0);
        double mx = -INFINITY;
        for (std::int64_t j = lo; j <= i; ++j) {
            double dot = 0;
            for (int e = 0; e < D; ++e) dot += w.qv(i, h, e) * w.kvv(j, 0, hk, e);
            prob[std::size_t(j - lo)] = dot * scale;
            mx = std::max(mx, dot * scale);
        }
        double sum = 0;
        for (double& x : prob) sum += (x = std::exp(x - mx));
        for (double& x : prob) x /= sum;
        double d_i = 0;  // D = dO . O
        for (int e = 0; e < D; ++e) {
            double o = 0;
            for (std::int64_t j = lo; j <= i; ++j) o += prob[std::size_t(j - lo)] * w.kvv(j, 1, hk, e);
            d_i += w.dov(i, h, e) * o;
        }
        ds.assign(prob.size(), 0.0);
        for (std::int64_t j = lo; j <= i; ++j) {
            double dp = 0;
            for (int e = 0; e < D; ++e) dp += w.dov(i, h, e) * w.kvv(j, 1, hk, e);
            ds[std::size_t(j - lo)] = prob[std::size_t(j - lo)] * (dp - d_i);
        }
    };
    auto expect_close = [](const std::vector<double>& got, const std::vector<double>& ref, const std::string& what) {
        double rms = 0;
        for (double x : ref) rms += x * x;
        rms = std::sqrt(rms / double(ref.size()));
        for (std::size_t e = 0; e < ref.size(); ++e)
            // 1e-6 absolute: row 0 sees one key, so its dq is zero up to rounding (dP - D = 0).
            ASSERT_LE(std::fabs(got[e] - ref[e]), 6e-2 * (std::fabs(ref[e]) + rms) + 1e-6) << what << " element " << e;
    };

    std::vector<double> prob, ds;
    for (std::int64_t i : {std::int64_t(0), std::int64_t(1), S / 2 + 3, S - 2, S - 1}) {
        const Window w = window(i, i + 1);
        const std::vector<double> got = download_rows(dq, Hq * D, i, i + 1);
        std::vector<double> ref(std::size_t(Hq * D), 0.0);
        for (int h = 0; h < Hq; ++h) {
            row_grads(w, i, h, prob, ds);
            const std::int64_t lo = std::max<std::int64_t>(0, i - W);
            for (std::int64_t j = lo; j <= i; ++j)
                for (int e = 0; e < D; ++e) ref[std::size_t(h * D + e)] += scale * ds[std::size_t(j - lo)] * w.kvv(j, 0, h / G, e);
        }
        expect_close(got, ref, "dq row " + std::to_string(i));
    }
    for (std::int64_t j : {std::int64_t(0), S / 2, S - W - 2, S - 1}) {
        const std::int64_t r1 = std::min(S, j + W + 1);  // rows that see key j: [j, j + W]
        const Window w = window(j, r1);
        const std::vector<double> got = download_rows(dkv, 2 * Hkv * D, j, j + 1);  // [dk heads | dv heads]
        std::vector<double> ref(std::size_t(2 * Hkv * D), 0.0);
        for (std::int64_t i = j; i < r1; ++i)
            for (int h = 0; h < Hq; ++h) {
                row_grads(w, i, h, prob, ds);
                const std::size_t at = std::size_t(j - std::max<std::int64_t>(0, i - W));
                for (int e = 0; e < D; ++e) {
                    ref[std::size_t((h / G) * D + e)] += scale * ds[at] * w.qv(i, h, e);
                    ref[std::size_t((Hkv + h / G) * D + e)] += prob[at] * w.dov(i, h, e);
                }
            }
        expect_close(got, ref, "dk, dv key " + std::to_string(j));
    }
    EXPECT_TRUE(dq.guards_intact());
    EXPECT_TRUE(dkv.guards_intact());
}

INSTANTIATE_TEST_SUITE_P(Families, CudaBackwardLarge, ::testing::Values(Family::sm80, Family::sm90),
                         [](const ::testing::TestParamInfo<Family>& info) { return std::string(family_name(info.param)); });

}  // namespace
}  // namespace ccattn
