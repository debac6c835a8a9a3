// The work of each mask mechanism as independent items, in the two orders the kernels need:
//   query-major (forward, dQ): a query block visits the key blocks it sees;
//   key-major (dK, dV): a key block visits the query blocks that see it.
// An engine (one per thread) receives start(block), visit(other block, TileMask) ..., finish().
// Bands (native, custom and tensors) go through core's tile schedule with GQA packing; mask_mod visits
// every tile as partial; block-sparse follows the user's lists, one query head per block.
#pragma once

#include <cstdint>
#include <vector>

#include "core/schedule.h"
#include "cpu/bands.h"
#include "cpu/blocks.h"
#include "cpu/thread_pool.h"
#include "cpu/tile_mask.h"

namespace ccattn::cpu {

// The predicate partial tiles apply (null for bands).
inline const MaskModFn* predicate_of(const core::AttnParams& p) {
    if (p.mask_kind == MaskKind::mask_mod) return &p.host_mask->mask_mod;
    if (p.mask_kind == MaskKind::block_sparse) return &p.host_mask->block_sparse.mask_mod;
    return nullptr;
}

namespace plan {

// Sequence b, (KV or query) head, tile, and chunk of a block-sparse tile larger than a block.
struct Item {
    int b = 0;
    int head = 0;
    std::int64_t tile = 0;
    std::int64_t chunk = 0;
};

// Runs body(engine, item) over all items in parallel, one engine per thread.
template <class MakeEngine, class Body>
void run(const core::AttnParams& p, const std::vector<Item>& items, MakeEngine make, Body body) {
    parallel_for(std::int64_t(items.size()), p.num_threads, [&] {
        return [&, engine = make()](std::int64_t n) mutable { body(engine, items[std::size_t(n)]); };
    });
}

// Every GQA-packed q-tile (query-major) or kv-tile (key-major) of every (sequence, KV head).
// Query-major lists the last q-tiles first: under a causal band they cost the most.
inline std::vector<Item> packed_items(const core::AttnParams& p, bool key_major) {
    std::vector<Item> items;
    for (int b = 0; b < p.batch; ++b) {
        const core::Sequence seq = core::sequence(p, b);
        const std::int64_t n = key_major ? core::num_tiles(seq.seqlen_k, kTileN)
                                         : core::num_tiles(seq.seqlen_q * p.group, kTileM);
        for (int kvh = 0; kvh < p.heads_kv; ++kvh)
            for (std::int64_t t = 0; t < n; ++t) items.push_back({b, kvh, key_major ? t : n - 1 - t, 0});
    }
    return items;
}

// ---- bands (native, custom and tensors): core's schedule ----

template <class Bands, class MakeEngine>
void query_major_band(const core::AttnParams& p, Bands bands, MakeEngine make) {
    run(p, packed_items(p, false), make, [&](auto& engine, const Item& it) {
        const core::Sequence seq = core::sequence(p, it.b);
        const auto band = bands(it.b, seq);
        QueryBlock qb = packed_block(p, it.b, seq, it.head, it.tile);
        set_band(qb, band);
        engine.start(qb);
        const core::TileRange range =
            core::kv_tile_range(band, core::query_span(it.tile, kTileM, p.group, seq.seqlen_q), kTileN);
        for (std::int64_t t = range.begin; t < range.end; ++t)
            engine.visit(key_block(it.b, seq, it.head, t * kTileN, seq.seqlen_k),
                         range.is_full(t) ? TileMask::none : TileMask::band);
        engine.finish();
    });
}

template <class Bands, class MakeEngine>
void key_major_band(const core::AttnParams& p, Bands bands, MakeEngine make) {
    run(p, packed_items(p, true), make, [&](auto& engine, const Item& it) {
        const core::Sequence seq = core::sequence(p, it.b);
        const auto band = bands(it.b, seq);
        const KeyBlock kb = key_block(it.b, seq, it.head, it.tile * kTileN, seq.seqlen_k);
        engine.start(kb);
        const core::TileRange range = core::q_tile_range(band, kb.n0, kTileN, seq.seqlen_q, kTileM, p.group);
        for (std::int64_t t = range.begin; t < range.end; ++t) {
            QueryBlock qb = packed_block(p, it.b, seq, it.head, t);
            set_band(qb, band);
            engine.visit(qb, range.is_full(t) ? TileMask::none : TileMask::band);
        }
        engine.finish();
    });
}

// ---- mask_mod: every tile of the sequence, predicate per element ----

template <class MakeEngine>
void query_major_predicate(const core::AttnParams& p, MakeEngine make) {
    run(p, packed_items(p, false), make, [&](auto& engine, const Item& it) {
        const core::Sequence seq = core::sequence(p, it.b);
        engine.start(packed_block(p, it.b, seq, it.head, it.tile));
        for (std::int64_t n0 = 0; n0 < seq.seqlen_k; n0 += kTileN)
            engine.visit(key_block(it.b, seq, it.head, n0, seq.seqlen_k), TileMask::predicate);
        engine.finish();
    });
}

template <class MakeEngine>
void key_major_predicate(const core::AttnParams& p, MakeEngine make) {
    run(p, packed_items(p, true), make, [&](auto& engine, const Item& it) {
        const core::Sequence seq = core::sequence(p, it.b);
        engine.start(key_block(it.b, seq, it.head, it.tile * kTileN, seq.seqlen_k));
        for (std::int64_t t = 0; t < core::num_tiles(seq.seqlen_q * p.group, kTileM); ++t)
            engine.visit(packed_block(p, it.b, seq, it.head, t), TileMask::predicate);
        engine.finish();
    });
}

// ---- block-sparse: the user's lists; a sparse tile larger than a block is visited in blocks ----

// Sparse tile t of `size` positions, cut to a sequence of `extent` positions: [begin, end).
struct Span {
    std::int64_t begin = 0, end = 0;
};
inline Span sparse_span(std::int64_t t, std::int64_t size, std::int64_t extent) {
    const std::int64_t begin = t * size, end = begin + size;
    return {begin, end < extent ? end : extent};
}

struct TileList {
    const std::int32_t* index = nullptr;
    std::int32_t count = 0;
};
inline TileList tile_list(const core::TileLists& l, int b, int h, std::int64_t mt) {
    return {l.index + b * l.index_batch_stride + h * l.index_head_stride + mt * l.index_tile_stride,
            l.count[b * l.count_batch_stride + h * l.count_head_stride + mt * l.count_tile_stride]};
}

// Items (b, query head, sparse q-tile, block of kTileM rows within it).
inline std::vector<Item> sparse_query_items(const core::AttnParams& p) {
    std::vector<Item> items;
    for (int b = 0; b < p.batch; ++b) {
        const core::Sequence seq = core::sequence(p, b);
        for (int h = 0; h < p.heads_q; ++h)
            for (std::int64_t mt = 0; mt < core::num_tiles(seq.seqlen_q, p.sparse_tile_m); ++mt) {
                const Span s = sparse_span(mt, p.sparse_tile_m, seq.seqlen_q);
                for (std::int64_t c = 0; c < core::num_tiles(s.end - s.begin, kTileM); ++c) items.push_back({b, h, mt, c});
            }
    }
    return items;
}

template <class MakeEngine>
void query_major_sparse(const core::AttnParams& p, MakeEngine make) {
    run(p, sparse_query_items(p), make, [&](auto& engine, const Item& it) {
        const core::Sequence seq = core::sequence(p, it.b);
        const Span rows = sparse_span(it.tile, p.sparse_tile_m, seq.seqlen_q);
        const std::int64_t i0 = rows.begin + it.chunk * kTileM;
        engine.start(head_block(it.b, seq, it.head, i0, int(rows.end - i0 < kTileM ? rows.end - i0 : kTileM)));
        const int kvh = it.head / p.group;
        for (TileMask mask : {TileMask::none, TileMask::predicate}) {
            const TileList list = tile_list(mask == TileMask::none ? p.sparse_full : p.sparse_partial, it.b, it.head, it.tile);
            for (std::int32_t e = 0; e < list.count; ++e) {
                const Span keys = sparse_span(list.index[e], p.sparse_tile_n, seq.seqlen_k);
                for (std::int64_t n0 = keys.begin; n0 < keys.end; n0 += kTileN)
                    engine.visit(key_block(it.b, seq, kvh, n0, keys.end), mask);
            }
        }
        engine.finish();
    });
}

// The lists inverted: for each (b, KV head, sparse kv-tile), the (query head, q-tile) pairs that
// list it, full or partial.
struct SparseEntry {
    int h = 0;
    std::int64_t mt = 0;
    TileMask mask = TileMask::none;
};

template <class MakeEngine>
void key_major_sparse(const core::AttnParams& p, MakeEngine make) {
    const std::int64_t kv_tiles = core::num_tiles(p.seqlen_k, p.sparse_tile_n);
    std::vector<std::vector<SparseEntry>> inverse(std::size_t(p.batch * p.heads_kv * kv_tiles));
    std::vector<Item> items;
    for (int b = 0; b < p.batch; ++b) {
        const core::Sequence seq = core::sequence(p, b);
        const std::int64_t seq_kv_tiles = core::num_tiles(seq.seqlen_k, p.sparse_tile_n);
        for (int h = 0; h < p.heads_q; ++h)
            for (std::int64_t mt = 0; mt < core::num_tiles(seq.seqlen_q, p.sparse_tile_m); ++mt)
                for (TileMask mask : {TileMask::none, TileMask::predicate}) {
                    const TileList list = tile_list(mask == TileMask::none ? p.sparse_full : p.sparse_partial, b, h, mt);
                    for (std::int32_t e = 0; e < list.count; ++e)
                        if (list.index[e] < seq_kv_tiles)
                            inverse[std::size_t((b * p.heads_kv + h / p.group) * kv_tiles + list.index[e])].push_back({h, mt, mask});
                }
        for (int kvh = 0; kvh < p.heads_kv; ++kvh)
            for (std::int64_t nt = 0; nt < seq_kv_tiles; ++nt) {
                const Span keys = sparse_span(nt, p.sparse_tile_n, seq.seqlen_k);
                for (std::int64_t c = 0; c < core::num_tiles(keys.end - keys.begin, kTileN); ++c) items.push_back({b, kvh, nt, c});
            }
    }
    run(p, items, make, [&](auto& engine, const Item& it) {
        const core::Sequence seq = core::sequence(p, it.b);
        const Span keys = sparse_span(it.tile, p.sparse_tile_n, seq.seqlen_k);
        engine.start(key_block(it.b, seq, it.head, keys.begin + it.chunk * kTileN, keys.end));
        for (const SparseEntry& e : inverse[std::size_t((it.b * p.heads_kv + it.head) * kv_tiles + it.tile)]) {
            const Span rows = sparse_span(e.mt, p.sparse_tile_m, seq.seqlen_q);
            for (std::int64_t i0 = rows.begin; i0 < rows.end; i0 += kTileM)
                engine.visit(head_block(it.b, seq, e.h, i0, int(rows.end - i0 < kTileM ? rows.end - i0 : kTileM)), e.mask);
        }
        engine.finish();
    });
}

}  // namespace plan

// Query-major pass over p's mask (forward, dQ); make() returns a fresh engine.
template <class MakeEngine>
void run_query_major(const core::AttnParams& p, MakeEngine make) {
    switch (p.mask_kind) {
        case MaskKind::band: plan::query_major_band(p, NativeBands{&p}, make); return;
        case MaskKind::custom_band: plan::query_major_band(p, CustomBands{&p}, make); return;
        case MaskKind::band_tensors: plan::query_major_band(p, TensorBands{&p}, make); return;
        case MaskKind::mask_mod: plan::query_major_predicate(p, make); return;
        case MaskKind::block_sparse: plan::query_major_sparse(p, make); return;
    }
}

// Key-major pass over p's mask (dK, dV).
template <class MakeEngine>
void run_key_major(const core::AttnParams& p, MakeEngine make) {
    switch (p.mask_kind) {
        case MaskKind::band: plan::key_major_band(p, NativeBands{&p}, make); return;
        case MaskKind::custom_band: plan::key_major_band(p, CustomBands{&p}, make); return;
        case MaskKind::band_tensors: plan::key_major_band(p, TensorBands{&p}, make); return;
        case MaskKind::mask_mod: plan::key_major_predicate(p, make); return;
        case MaskKind::block_sparse: plan::key_major_sparse(p, make); return;
    }
}

}  // namespace ccattn::cpu
