// The Hopper forward's work order and kv steps (src/sm90/tile_scheduler.h, work_tile.h): pure
// integer code the producer and consumer warp groups both follow, checked on the host against brute
// force — every (q-tile, head, batch, split) once, longest q-tiles first; every kv tile holding a
// visible pair visited once; unmasked steps holding only visible pairs; splits partitioning a tile's
// steps in order; block-sparse lists; the balance of the static round-robin (varlen) and of the
// dynamic schedule.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "core/band.h"
#include "core/params.h"
#include "sm90/tile_scheduler.h"
#include "sm90/work_tile.h"

namespace ccattn {
namespace {

// ---------------------------------------------------------------------------------------------
// Work order and kv steps (host)

struct HostCall {
    std::vector<std::int32_t> cu_q, cu_k;
    core::AttnParams p;
};

HostCall host_call(std::vector<std::int32_t> cu_q, std::vector<std::int32_t> cu_k, int heads_kv, int group,
                   const core::BandSpec& band, MaskKind kind) {
    HostCall h;
    h.cu_q = std::move(cu_q);
    h.cu_k = std::move(cu_k);
    core::AttnParams& p = h.p;
    p.batch = int(h.cu_q.size()) - 1;
    p.cu_seqlens_q = h.cu_q.data();
    p.cu_seqlens_k = h.cu_k.data();
    for (int b = 0; b < p.batch; ++b) {
        p.seqlen_q = std::max<std::int64_t>(p.seqlen_q, h.cu_q[b + 1] - h.cu_q[b]);
        p.seqlen_k = std::max<std::int64_t>(p.seqlen_k, h.cu_k[b + 1] - h.cu_k[b]);
    }
    p.heads_kv = heads_kv;
    p.group = group;
    p.heads_q = heads_kv * group;
    p.band = band;
    p.mask_kind = kind;
    return h;
}

// Every (m_block, head, batch) once, longest q-tiles first; per tile, the steps visit every kv tile
// holding a visible pair exactly once, and a step left unmasked holds only visible pairs.
template <int kBlockM, int kBlockN>
void check_work_tiles(const core::AttnParams& p) {
    const sm90::TileScheduler s = sm90::TileScheduler::make(p, kBlockM);
    std::set<std::tuple<std::int64_t, int, int>> seen;
    std::int64_t previous_m = s.num_m_blocks;
    for (std::int64_t w = 0; w < s.num_tiles(); ++w) {
        const sm90::WorkTile wt = s.tile(w);
        ASSERT_LE(wt.m_block, previous_m);
        previous_m = wt.m_block;
        ASSERT_TRUE(seen.emplace(wt.m_block, wt.head, wt.batch).second);
        const sm90::WorkInfo<kBlockM, kBlockN> info(p, wt, s);
        const core::Sequence seq = core::sequence(p, wt.batch);
        ASSERT_EQ(info.in_sequence, wt.m_block * kBlockM < seq.seqlen_q * p.group);
        if (!info.in_sequence) continue;
        std::map<int, sm90::Masking> steps;
        for (int i = 0; i < info.num_steps; ++i) {
            const sm90::KvStep st = info.step(i);
            ASSERT_TRUE(steps.emplace(st.n, st.masking).second) << "kv tile " << st.n << " visited twice";
            ASSERT_NE(st.masking, sm90::Masking::seqlen);
            if (p.mask_kind == MaskKind::mask_mod) ASSERT_EQ(st.masking, sm90::Masking::band);
        }
        if (p.mask_kind == MaskKind::mask_mod) ASSERT_EQ(info.num_steps, core::num_tiles(seq.seqlen_k, kBlockN));
        const core::CompressedBand band = p.band.for_sequence(seq.seqlen_q, seq.seqlen_k);
        for (int r = 0; r < kBlockM && info.row_begin + r < seq.seqlen_q * p.group; ++r) {
            const std::int64_t i = info.query_of(r);
            ASSERT_EQ(i, (info.row_begin + r) / p.group);
            ASSERT_EQ(info.head_of(r), wt.head * p.group + int((info.row_begin + r) % p.group));
            for (std::int64_t j = 0; j < seq.seqlen_k; ++j) {
                const bool visible = core::visible(band, i, j);
                auto it = steps.find(int(j / kBlockN));
                if (visible) ASSERT_NE(it, steps.end()) << "row " << i << " key " << j << " never visited";
                if (!visible && it != steps.end())
                    ASSERT_NE(it->second, sm90::Masking::none) << "row " << i << " key " << j << " unmasked";
            }
        }
    }
    ASSERT_EQ(std::int64_t(seen.size()), s.num_tiles());
}

core::BandSpec band_spec(bool causal, std::int64_t cf, std::optional<std::int64_t> delta = {},
                         std::int64_t window = core::kNoWindow) {
    core::BandSpec b;
    b.causal = causal;
    b.compress_factor = cf;
    b.has_diag_offset = delta.has_value();
    b.diag_offset = delta.value_or(0);
    b.window_left = window;
    return b;
}

TEST(Sm90Schedule, BandsAgainstBruteForce) {
    const std::vector<std::int32_t> cu_q = {0, 0, 113, 113, 700, 701, 1001};
    const std::vector<std::int32_t> cu_k = {0, 50, 50, 300, 300, 1000, 1013};
    for (int group : {1, 3, 4, 16})
        for (const core::BandSpec& band :
             {band_spec(false, 1), band_spec(true, 1), band_spec(true, 4), band_spec(true, 16, -31),
              band_spec(true, 4, 37), band_spec(true, 1, {}, 100), band_spec(false, 1, 0, 20),
              band_spec(true, 1, -300), band_spec(true, 64)}) {
            SCOPED_TRACE("group " + std::to_string(group) + " cf " + std::to_string(band.compress_factor));
            HostCall h = host_call(cu_q, cu_k, 2, group, band, MaskKind::band);
            check_work_tiles<128, 128>(h.p);
            check_work_tiles<192, 128>(h.p);
            check_work_tiles<128, 64>(h.p);
            h.p.mask_kind = MaskKind::mask_mod;
            check_work_tiles<128, 128>(h.p);
        }
}

// The tile mapping by the host's dividers: level-major (the last q-tile first), each level's
// (head, batch, split) triples rotated one further than the level before, for extents of every size
// class (1, powers of two, odd, around the 2^31 limit of the fast path).
TEST(Sm90Schedule, TileMappingMatchesDivision) {
    for (int heads : {1, 2, 3, 8, 64})
        for (int batch : {1, 5, 16})
            for (int splits : {1, 2, 7}) {
                core::AttnParams p;
                p.batch = batch;
                p.heads_kv = heads;
                p.group = 3;
                p.heads_q = 3 * heads;
                p.seqlen_q = 1000;
                const sm90::TileScheduler s = sm90::TileScheduler::make(p, 128, splits);
                const std::int64_t per_m = std::int64_t(heads) * batch * splits;
                for (std::int64_t w = 0; w < s.num_tiles(); ++w) {
                    const sm90::WorkTile t = s.tile(w);
                    const std::int64_t level = w / per_m, rest = (w % per_m + level) % per_m;
                    ASSERT_EQ(t.m_block, s.num_m_blocks - 1 - level) << w;
                    ASSERT_EQ(t.split, rest % splits) << w;
                    ASSERT_EQ(t.head, rest / splits % heads) << w;
                    ASSERT_EQ(t.batch, rest / splits / heads) << w;
                }
            }
    // Near the limit: the last tiles of a grid just under 2^31 tiles, and one just over (64-bit path).
    for (std::int64_t seqlen : {(std::int64_t(1) << 31) / 64 * 128 - 128, (std::int64_t(1) << 31) / 64 * 128 + 128}) {
        core::AttnParams p;
        p.batch = 4;
        p.heads_kv = 16;
        p.group = 1;
        p.heads_q = 16;
        p.seqlen_q = seqlen;
        const sm90::TileScheduler s = sm90::TileScheduler::make(p, 128);
        for (std::int64_t w = s.num_tiles() - 3000; w < s.num_tiles(); ++w) {
            const sm90::WorkTile t = s.tile(w);
            const std::int64_t level = w / 64, rest = (w % 64 + level) % 64;
            ASSERT_EQ(t.m_block, s.num_m_blocks - 1 - level) << w;
            ASSERT_EQ(t.head, rest % 16) << w;
            ASSERT_EQ(t.batch, rest / 16) << w;
        }
    }
}

// The most loaded CTA's work over the mean when `grid` CTAs take the scheduler's tiles, each costing
// its kv steps + 1 (the fixed cost: Q load, epilogue): statically (CTA w % grid) or dynamically
// (whichever CTA is free first, tile_queue.h).
double load_balance(const core::AttnParams& p, int grid, bool dynamic) {
    const sm90::TileScheduler s = sm90::TileScheduler::make(p, 128);
    std::vector<std::int64_t> work(std::size_t(grid), 0);
    std::int64_t total = 0;
    for (std::int64_t w = 0; w < s.num_tiles(); ++w) {
        const sm90::WorkInfo<128, 128> info(p, s.tile(w), s);
        const std::int64_t cost = info.in_sequence ? info.num_steps + 1 : 0;
        auto cta = dynamic ? std::min_element(work.begin(), work.end()) : work.begin() + w % grid;
        *cta += cost;
        total += cost;
    }
    return double(*std::max_element(work.begin(), work.end())) / (double(total) / grid);
}

// The benchmark's six varlen documents: cf 16, delta -31, 4 KV heads x G 8.
HostCall six_documents() {
    const std::vector<std::int32_t> docs = {11611, 5943, 13937, 2582, 3373, 18559};
    std::vector<std::int32_t> cu_q = {0}, cu_k = {0};
    for (std::int32_t n : docs) {
        cu_q.push_back(cu_q.back() + n);
        cu_k.push_back(cu_k.back() + (n - 32) / 16 + 1);
    }
    return host_call(cu_q, cu_k, 4, 8, band_spec(true, 16, -31), MaskKind::band);
}

// The static round-robin (split-KV launches) spreads the six documents over 132 CTAs within 1.1x of
// the mean (without the per-level rotation each CTA met 2 of the 6 documents: up to 2.07x).
TEST(Sm90Schedule, RoundRobinBalancesVarlen) { EXPECT_LE(load_balance(six_documents().p, 132, false), 1.1); }

// The dynamic schedule keeps the most loaded of 132 CTAs within 1.02x of the mean on causal 16K (16
// heads; the static round-robin: 1.06x) and on the six documents.
TEST(Sm90Schedule, DynamicOrderBalances) {
    HostCall causal = host_call({0, 16384}, {0, 16384}, 16, 1, band_spec(true, 1), MaskKind::band);
    EXPECT_LE(load_balance(causal.p, 132, true), 1.02);
    EXPECT_LE(load_balance(six_documents().p, 132, true), 1.02);
}

// Block-sparse lists: partial tiles (masked by the band) in list order, then full tiles, unmasked
// unless they overhang the sequence; rows are query positions of one query head.
TEST(Sm90Schedule, BlockSparseLists) {
    // one sequence, Sq 300, Sk 200, one list shared by the heads; 128 x 128 tiles: 3 q-tiles
    std::vector<std::int32_t> full_count = {1, 1, 0}, partial_count = {1, 0, 0};
    std::vector<std::int32_t> full_index = {0, -1, 1, -1, -1, -1}, partial_index = {1, -1, -1};
    HostCall h = host_call({0, 300}, {0, 200}, 2, 3, band_spec(true, 1), MaskKind::block_sparse);
    core::AttnParams& p = h.p;
    p.cu_seqlens_q = p.cu_seqlens_k = nullptr;  // fixed length
    p.sparse_full = {full_count.data(), full_index.data(), 3, 0, 1, 6, 0, 2};
    p.sparse_partial = {partial_count.data(), partial_index.data(), 3, 0, 1, 3, 0, 1};
    const sm90::TileScheduler s = sm90::TileScheduler::make(p, 128);
    ASSERT_EQ(s.num_m_blocks, 3);
    ASSERT_EQ(s.heads, 6);
    using Info = sm90::WorkInfo<128, 128>;
    const Info t0(p, {0, 4, 0}, s);
    ASSERT_EQ(t0.num_steps, 2);
    EXPECT_EQ(t0.step(0).n, 1);
    EXPECT_EQ(t0.step(0).masking, sm90::Masking::band);
    EXPECT_EQ(t0.step(1).n, 0);
    EXPECT_EQ(t0.step(1).masking, sm90::Masking::none);
    EXPECT_EQ(t0.kv_head, 1);
    EXPECT_EQ(t0.head_of(77), 4);
    EXPECT_EQ(t0.query_of(77), 77);
    const Info t1(p, {1, 5, 0}, s);
    ASSERT_EQ(t1.num_steps, 1);
    EXPECT_EQ(t1.step(0).n, 1);
    EXPECT_EQ(t1.step(0).masking, sm90::Masking::seqlen);  // keys 128..255 of a 200-key sequence
    EXPECT_EQ(t1.query_of(3), 131);
    EXPECT_EQ(Info(p, {2, 0, 0}, s).num_steps, 0);
    EXPECT_FALSE(Info(p, {3, 0, 0}, s).in_sequence);
}


// Split-KV: the scheduler hands out every (q-tile, head, batch, split) once, longest q-tiles first;
// a tile's splits take its steps in order, each a contiguous share of at most ceil(steps / splits);
// key_begin / key_end bound exactly the keys of a split's kv tiles (band and mask_mod).
template <int kBlockM, int kBlockN>
void check_splits(const core::AttnParams& p, int splits) {
    const sm90::TileScheduler s = sm90::TileScheduler::make(p, kBlockM, splits);
    const sm90::TileScheduler whole = sm90::TileScheduler::make(p, kBlockM);
    ASSERT_EQ(s.num_tiles(), whole.num_tiles() * splits);
    std::set<std::tuple<std::int64_t, int, int, int>> seen;
    std::int64_t previous_m = s.num_m_blocks;
    for (std::int64_t w = 0; w < s.num_tiles(); ++w) {
        const sm90::WorkTile wt = s.tile(w);
        ASSERT_LE(wt.m_block, previous_m);
        previous_m = wt.m_block;
        ASSERT_TRUE(wt.split >= 0 && wt.split < splits);
        ASSERT_TRUE(seen.emplace(wt.m_block, wt.head, wt.batch, wt.split).second);
    }
    for (std::int64_t w = 0; w < whole.num_tiles(); ++w) {
        const sm90::WorkTile wt = whole.tile(w);
        const sm90::WorkInfo<kBlockM, kBlockN> unsplit(p, wt, whole);
        std::vector<int> joined;
        for (int k = 0; k < splits; ++k) {
            sm90::WorkTile part = wt;
            part.split = k;
            const sm90::WorkInfo<kBlockM, kBlockN> info(p, part, s);
            ASSERT_LE(info.num_steps, (unsplit.num_steps + splits - 1) / splits);
            int lo = 1 << 30, hi = -1;
            for (int i = 0; i < info.num_steps; ++i) {
                const sm90::KvStep st = info.step(i);
                ASSERT_EQ(st.masking, unsplit.step(int(joined.size())).masking);
                joined.push_back(st.n);
                lo = std::min(lo, st.n);
                hi = std::max(hi, st.n);
            }
            if (info.num_steps > 0 && p.mask_kind != MaskKind::block_sparse) {
                EXPECT_EQ(info.key_begin(), lo * kBlockN);
                EXPECT_EQ(info.key_end(), std::min<std::int64_t>((hi + 1) * kBlockN, info.seqlen_k));
            }
        }
        ASSERT_EQ(int(joined.size()), unsplit.num_steps);
        for (int i = 0; i < unsplit.num_steps; ++i) ASSERT_EQ(joined[std::size_t(i)], unsplit.step(i).n);
    }
}

TEST(Sm90Schedule, SplitsPartitionTheSteps) {
    const std::vector<std::int32_t> cu_q = {0, 0, 113, 113, 700, 701, 1001};
    const std::vector<std::int32_t> cu_k = {0, 50, 50, 300, 300, 1000, 1013};
    for (int group : {1, 4, 16})
        for (const core::BandSpec& band : {band_spec(false, 1), band_spec(true, 1), band_spec(true, 16, -31),
                                           band_spec(true, 1, {}, 100), band_spec(true, 64)})
            for (int splits : {1, 2, 3, 7, 64}) {
                SCOPED_TRACE("group " + std::to_string(group) + " cf " + std::to_string(band.compress_factor) +
                             " splits " + std::to_string(splits));
                HostCall h = host_call(cu_q, cu_k, 2, group, band, MaskKind::band);
                check_splits<128, 128>(h.p, splits);
                check_splits<128, 64>(h.p, splits);
                h.p.mask_kind = MaskKind::mask_mod;
                check_splits<128, 128>(h.p, splits);
            }
}

// Block-sparse lists split too: a split takes a contiguous share of the partial-then-full list.
TEST(Sm90Schedule, SplitsOfBlockSparseLists) {
    std::vector<std::int32_t> full_count = {1, 1, 0}, partial_count = {1, 0, 0};
    std::vector<std::int32_t> full_index = {0, -1, 1, -1, -1, -1}, partial_index = {1, -1, -1};
    HostCall h = host_call({0, 300}, {0, 200}, 2, 3, band_spec(true, 1), MaskKind::block_sparse);
    core::AttnParams& p = h.p;
    p.cu_seqlens_q = p.cu_seqlens_k = nullptr;
    p.sparse_full = {full_count.data(), full_index.data(), 3, 0, 1, 6, 0, 2};
    p.sparse_partial = {partial_count.data(), partial_index.data(), 3, 0, 1, 3, 0, 1};
    for (int splits : {2, 3}) check_splits<128, 128>(p, splits);
    using Info = sm90::WorkInfo<128, 128>;
    const sm90::TileScheduler halves = sm90::TileScheduler::make(p, 128, 2);
    const Info first(p, {0, 4, 0, 0}, halves), second(p, {0, 4, 0, 1}, halves);
    ASSERT_EQ(first.num_steps, 1);
    EXPECT_EQ(first.step(0).n, 1);
    EXPECT_EQ(first.step(0).masking, sm90::Masking::band);
    ASSERT_EQ(second.num_steps, 1);
    EXPECT_EQ(second.step(0).n, 0);
    EXPECT_EQ(second.step(0).masking, sm90::Masking::none);
}

}  // namespace
}  // namespace ccattn
