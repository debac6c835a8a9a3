// The backward's tile scheduler: the q-tiles one CTA (kv-tile, q chunk, KV head, batch) visits, in
// order, and how each is masked. Each kind's q-tiles are cut to the CTA's chunk (QChunks).
//   band, band tensors: q-tiles [begin, end) of core::q_tile_range over the sequence's band
//                 (core/band_source.h), GQA-packed; full ones unmasked.
//   mask_mod:     every q-tile of the sequence, GQA-packed, masked per element.
//   block_sparse: per query head of the group (no packing), in ascending order, the q-tiles whose lists
//                 name a sparse kv-tile of this CTA (SparseBits); keys of partial sparse tiles are masked
//                 per element, keys of full ones only at the sequence end.
#pragma once

#include <cstdint>

#include "ccattn/mask.h"
#include "core/host_device.h"
#include "core/band_source.h"
#include "core/params.h"
#include "core/schedule.h"
#include "sm80/backward_params.h"

namespace ccattn::sm80 {

// How a q-tile's scores are masked.
enum class TileMask : std::uint8_t {
    none,     // every (row, key) pair visible
    limits,   // per row: keys [lo(i), hi(i)) of the band
    bounds,   // per row: keys below Sk (block-sparse tiles full up to a ragged sequence end)
    element,  // the band predicate per (row, key) pair: the mask_mod path
    sparse,   // per key: its sparse kv-tile's kind (sub_visit / sub_full), the band predicate if partial
};

// One q-tile: packed rows [m_block * q_tile, +q_tile); packed row R is query R / pack of head
// head0 + R % pack. For TileMask::sparse, bit u of sub_visit / sub_full: the CTA's u-th sparse kv-tile
// is visited / full for this q-tile.
struct QTile {
    std::int64_t m_block = 0;
    int head0 = 0;
    int pack = 1;
    TileMask mask = TileMask::none;
    std::uint32_t sub_visit = 0, sub_full = 0;
    int rank = 0;  // deterministic mode: CTAs that add into this q-tile's dQ before this one (AddOrder),
                   // set by the kernel from QTileSchedule::rank
    bool direct = false;  // this CTA alone produces the q-tile's dQ: stored, not added (DirectDq)
};

// A packed row's query position and head.
struct QRow {
    bool valid = false;
    std::int64_t i = 0;
    int h = 0;
};

// Query position and head of packed row r of a q-tile, or !valid past the sequence end. Packed rows
// stay below 2^31 (the CUDA backend checks Sq * G), so the division is 32-bit.
CCATTN_HD QRow q_row(const QTile& t, int r, int q_tile, std::int64_t seqlen_q) {
    const std::int64_t packed = t.m_block * q_tile + r;
    if (packed >= seqlen_q * t.pack) return {false, 0, t.head0};
    const std::uint32_t u = std::uint32_t(packed), pack = std::uint32_t(t.pack);
    const std::uint32_t i = u / pack;
    return {true, std::int64_t(i), t.head0 + int(u - i * pack)};
}

// TileMask::limits: the columns [lo, hi) of key tile [n0, n0 + kv_tile) that query i sees under the
// band, i.e. [band.lo(i), band.hi(i)) shifted into the tile and clamped to it.
CCATTN_HD void band_columns(const core::SequenceBand& band, std::int64_t i, std::int64_t n0, int kv_tile, int& lo,
                            int& hi) {
    const core::RowLimits r = band.limits(i);
    lo = int(core::clamp(r.lo - n0, 0, kv_tile));
    hi = int(core::clamp(r.hi - n0, 0, kv_tile));
}

// TileMask::sparse: is key n0 + col visible? Its sparse kv-tile (the CTA's u-th, counted from the one
// holding key n0) must be listed for the q-tile, as full, or as partial with the band predicate (the
// CUDA backend's mask_mod), `in_band`, true. Keys stay below 2^31 (checked on the host).
CCATTN_HD bool sparse_visible(const QTile& t, const SparseBits& sb, std::int64_t n0, int col, std::int64_t seqlen_k,
                              bool in_band) {
    const std::uint32_t tn = std::uint32_t(sb.tile_n);
    const int u = int(std::uint32_t(n0 + col) / tn - std::uint32_t(n0) / tn);
    return n0 + col < seqlen_k && ((t.sub_visit >> u) & 1) && (((t.sub_full >> u) & 1) || in_band);
}

// Whether q-tile m's dQ comes from one CTA alone, which then stores it (DirectDq). Band and band tensors:
// with i0, i1 the q-tile's first and last query and n = floor(lo(i0) / kv_tile), kv tile n's CTA visits
// m iff hi(i1) > n kv_tile, n kv_tile < Sk and some row of the sequence has hi > n kv_tile and lo <
// (n + 1) kv_tile (core::q_tile_range: lo(i0) < (n + 1) kv_tile holds by the choice of n); if also
// hi(i1) <= (n + 1) kv_tile, a CTA of any other kv tile n' would need lo(i0) < (n' + 1) kv_tile and
// hi(i1) > n' kv_tile, so n' = n. mask_mod: every CTA of the sequence visits every q-tile, so
// sequences of one kv tile. Block-sparse lists: never. Evaluated once per q-tile (its two binary
// searches over the rows are too slow for the schedule's thread): direct_tiles_kernel.
CCATTN_HD bool sole_dq_tile(MaskKind kind, const core::SequenceBand& band, std::int64_t m, int q_tile, int group,
                            std::int64_t seqlen_q, int kv_tile) {
    const core::RowSpan rows = core::query_span(m, q_tile, group, seqlen_q);
    const std::int64_t sk = band.seqlen_k();
    if (rows.empty()) return false;
    if (kind == MaskKind::mask_mod) return 0 < sk && sk <= kv_tile;
    if (kind != MaskKind::band && kind != MaskKind::band_tensors) return false;
    const std::int64_t hi_last = band.hi(rows.end - 1);
    const std::int64_t n0 = core::floor_div(band.lo(rows.begin), kv_tile) * kv_tile, n1 = n0 + kv_tile;
    if (hi_last <= n0 || hi_last > n1 || n0 >= sk) return false;
    const std::int64_t i_begin = core::first_row_hi_above(band, n0, seqlen_q);
    const std::int64_t i_end = core::first_row_lo_above(band, n1 - 1, seqlen_q);
    return i_end > i_begin;
}

// The sequence of a varlen batch holding tensor row `row`: the last b < batch with cu_seqlens[b] <= row.
CCATTN_HD int sequence_of_row(const std::int32_t* cu_seqlens, int batch, std::int64_t row) {
    return int(core::partition_point(1, batch, [&](std::int64_t b) { return cu_seqlens[b] > row; })) - 1;
}

// Whether (dense row, query head) lies in a direct q-tile: the preprocess and the conversion skip its
// accumulator row.
CCATTN_HD bool direct_dq_row(const BackwardParams& bp, std::int64_t row, int h) {
    if (!bp.direct.on) return false;
    const core::AttnParams& p = bp.p;
    const int b = p.varlen() ? sequence_of_row(p.cu_seqlens_q, p.batch, row) : int(core::floor_div_fast(row, p.seqlen_q));
    const std::int64_t i = row - (p.varlen() ? std::int64_t(p.cu_seqlens_q[b]) : std::int64_t(b) * p.seqlen_q);
    const std::uint32_t packed = std::uint32_t(i * p.group + h % p.group);  // below 2^31 (checked)
    return bp.direct.tiles[b * bp.direct.tiles_per_sequence + packed / std::uint32_t(bp.direct.q_tile)] != 0;
}

// Index of the lowest set bit of x != 0.
CCATTN_HD int lowest_bit(std::uint64_t x) {
#if defined(__CUDA_ARCH__)
    return __ffsll(static_cast<long long>(x)) - 1;
#else
    return __builtin_ctzll(x);
#endif
}

// Built and advanced by one thread; host-callable so that tests can walk it.
class QTileSchedule {
  public:
    CCATTN_HD QTileSchedule(const BackwardParams& bp, const core::SequenceBand& band, int b, int kv_head,
                             std::int64_t n_block, int chunk, std::int64_t seqlen_q, std::int64_t seqlen_k, int q_tile,
                             int kv_tile)
        : kind_(bp.p.mask_kind), group_(bp.p.group), head0_(kv_head * bp.p.group), q_tile_(q_tile),
          band_(band), n_block_(n_block), kv_tile_(kv_tile), seqlen_q_(seqlen_q),
          direct_(bp.direct.on ? bp.direct.tiles + b * bp.direct.tiles_per_sequence : nullptr) {
        const std::int64_t n0 = n_block * kv_tile;
        const std::int64_t chunk_begin = chunk * bp.chunks.length;
        const std::int64_t chunk_end = chunk_begin + bp.chunks.length;
        if (kind_ == MaskKind::block_sparse) {
            const SparseBits& s = bp.sparse;
            visit_ = s.visit;
            full_ = s.full;
            words_ = s.words;
            q_subtiles_ = s.q_subtiles;
            // Sparse q-tiles of the chunk that hold rows of this sequence; bits past them are ignored.
            t_begin_ = chunk_begin;
            t_end_ = core::min(chunk_end, core::ceil_div(seqlen_q, std::int64_t(q_tile) * s.q_subtiles));
            ragged_kv_ = n0 + kv_tile > seqlen_k;
            // The sparse kv-tiles overlapping keys [n0, n0 + kv_tile).
            const std::int64_t kt0 = n0 / s.tile_n, kt1 = core::ceil_div(n0 + kv_tile, s.tile_n);
            kt_count_ = int((kt1 < s.kv_tiles ? kt1 : s.kv_tiles) - kt0);
            row0_ = (std::int64_t(b) * bp.p.heads_q + head0_) * s.kv_tiles + kt0;
            head_stride_ = s.kv_tiles;
        } else {
            const core::TileRange r = kind_ == MaskKind::mask_mod
                                          ? core::make_range(0, core::num_tiles(seqlen_q * group_, q_tile), 0, 0)
                                          : core::q_tile_range(band, n0, kv_tile, seqlen_q, q_tile, group_);
            range_ = core::make_range(core::max(r.begin, chunk_begin), core::min(r.end, chunk_end), r.full_begin,
                                      r.full_end);
        }
        m_ = range_.begin - 1;
    }

    // The next q-tile, or false when the CTA is done.
    CCATTN_HD bool next(QTile& t) {
        if (kind_ == MaskKind::block_sparse) return next_sparse(t);
        if (++m_ >= range_.end) return false;
        t.m_block = m_;
        t.head0 = head0_;
        t.pack = group_;
        t.mask = kind_ == MaskKind::mask_mod ? TileMask::element : range_.is_full(m_) ? TileMask::none : TileMask::limits;
        t.direct = direct_ != nullptr && direct_[m_] != 0;
        return true;
    }

    // Deterministic mode (built-in band and mask_mod): QTile::rank of q-tile t that next() returned. A q-tile's
    // adders take turns from its last kv tile down: that one reaches it first (it is the first q-tile of
    // a causal band's last visitor, and each kv tile below reaches it a q-tile or two later), where
    // the other order would hold kv tile n back until kv tile 0 had walked the 2n q-tiles before it.
    CCATTN_HD int rank(const QTile& t) const { return int(last_kv_tile(t.m_block) - n_block_); }

  private:
    // The last of the kv tiles that visit q-tile m: the sequence's last for mask_mod. For the band,
    // q_tile_range puts m in kv tile n's range iff lo(i0) < (n + 1) kv_tile and hi(i1) > n kv_tile
    // (i0, i1: m's first and last query) and some row of the sequence sees the tile. The built-in band's
    // non-empty rows see one contiguous run of keys (lo and hi step by at most 1 per row, and empty rows
    // only lead or trail), so the visitors are consecutive up to ceil(hi(i1) / kv_tile) - 1, the
    // forward's last kv tile of m. Tests walk every CTA's schedule and check each q-tile's ranks.
    CCATTN_HD std::int64_t last_kv_tile(std::int64_t m) const {
        if (kind_ == MaskKind::mask_mod) return core::num_tiles(band_.seqlen_k(), kv_tile_) - 1;
        const std::int64_t i1 = core::query_span(m, q_tile_, group_, seqlen_q_).end - 1;
        return core::ceil_div(band_.hi(i1), kv_tile_) - 1;
    }

    // Walks (query head g, sparse q-tile t, kernel q-tile s inside it) in that nesting order.
    CCATTN_HD bool next_sparse(QTile& out) {
        for (;;) {
            if (t_ >= 0 && ++s_ < q_subtiles_ && (t_ * q_subtiles_ + s_) * q_tile_ < seqlen_q_) {
                out.m_block = t_ * q_subtiles_ + s_;
                out.head0 = head0_ + g_;
                out.pack = 1;
                out.sub_visit = sub_visit_;
                out.sub_full = sub_full_;
                const std::uint32_t all = kt_count_ == 32 ? ~0u : (1u << kt_count_) - 1;
                out.mask = sub_full_ != all ? TileMask::sparse : ragged_kv_ ? TileMask::bounds : TileMask::none;
                out.direct = false;
                return true;
            }
            t_ = next_visit(t_ < 0 ? t_begin_ : t_ + 1);
            s_ = -1;
            if (t_ >= 0) {
                sub_visit_ = sub_bits(visit_, t_);
                sub_full_ = sub_bits(full_, t_);
            } else if (++g_ >= group_) {
                return false;
            }
        }
    }

    // Bit row of sparse kv-tile u of this CTA, for query head g_.
    CCATTN_HD const unsigned long long* bit_row(const unsigned long long* bits, int u) const {
        return bits + (row0_ + std::int64_t(g_) * head_stride_ + u) * words_;
    }
    CCATTN_HD std::uint32_t sub_bits(const unsigned long long* bits, std::int64_t t) const {
        std::uint32_t m = 0;
        for (int u = 0; u < kt_count_; ++u) m |= std::uint32_t((bit_row(bits, u)[t >> 6] >> (t & 63)) & 1) << u;
        return m;
    }

    // First sparse q-tile in [from, t_end_) that visits any of this CTA's sparse kv-tiles for head g_,
    // or -1.
    CCATTN_HD std::int64_t next_visit(std::int64_t from) const {
        for (std::int64_t w = from >> 6; w * 64 < t_end_; ++w) {
            std::uint64_t x = 0;
            for (int u = 0; u < kt_count_; ++u) x |= bit_row(visit_, u)[w];
            if (w == from >> 6) x &= ~std::uint64_t(0) << (from & 63);
            if (x != 0) {
                const std::int64_t t = w * 64 + lowest_bit(x);
                return t < t_end_ ? t : -1;
            }
        }
        return -1;
    }

    MaskKind kind_;
    int group_, head0_, q_tile_;
    core::SequenceBand band_;
    std::int64_t n_block_;
    int kv_tile_;
    std::int64_t seqlen_q_;
    const std::uint8_t* direct_;  // this sequence's DirectDq::tiles, or null
    core::TileRange range_;
    std::int64_t m_ = 0;
    // block-sparse state
    const unsigned long long* visit_ = nullptr;
    const unsigned long long* full_ = nullptr;
    std::int64_t words_ = 0, row0_ = 0, head_stride_ = 0, t_begin_ = 0, t_end_ = 0;
    std::int64_t t_ = -1;
    int q_subtiles_ = 1, kt_count_ = 1, s_ = -1, g_ = 0;
    std::uint32_t sub_visit_ = 0, sub_full_ = 0;
    bool ragged_kv_ = false;
};

}  // namespace ccattn::sm80
