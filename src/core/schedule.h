// The tile schedule: which (q-tile, kv-tile) pairs hold visible pairs, and which of those need
// masking. Works for any monotone band (lo, hi non-decreasing), built-in or user-defined.
//
// GQA packing: the G = Hq / Hkv query heads of one KV head are interleaved into one row space of
// Sq * G packed rows; packed row r is query r / G of head r % G. A q-tile is tile_m packed rows.
// With G = 1 a q-tile is tile_m query positions of one head.
#pragma once

#include <cstdint>

#include "core/band.h"
#include "core/host_device.h"

namespace ccattn::core {

enum class TileKind { skip, partial, full };

// Query positions [begin, end) covered by q-tile mt (end clamped to the sequence).
struct RowSpan {
    std::int64_t begin = 0, end = 0;
    CCATTN_HD bool empty() const { return end <= begin; }
};

CCATTN_HD RowSpan query_span(std::int64_t mt, std::int64_t tile_m, std::int64_t group, std::int64_t seqlen_q) {
    std::int64_t r0 = mt * tile_m;
    std::int64_t r1 = r0 + tile_m < seqlen_q * group ? r0 + tile_m : seqlen_q * group;
    if (r1 <= r0) return {0, 0};
    return {floor_div_fast(r0, group), floor_div_fast(r1 - 1, group) + 1};  // rows are >= 0
}

CCATTN_HD std::int64_t num_tiles(std::int64_t extent, std::int64_t tile) { return ceil_div(extent, tile); }

// Classification of q rows `rows` against keys [n0, n0 + tile_n). The kv tile is not clamped to Sk:
// a ragged last tile is never full, so the in-register mask also covers the sequence end.
template <class Band>
CCATTN_HD TileKind classify(const Band& band, RowSpan rows, std::int64_t n0, std::int64_t tile_n) {
    std::int64_t n1 = n0 + tile_n;
    if (rows.empty() || n0 >= band.hi(rows.end - 1) || n1 <= band.lo(rows.begin)) return TileKind::skip;
    if (band.lo(rows.end - 1) <= n0 && n1 <= band.hi(rows.begin)) return TileKind::full;
    return TileKind::partial;
}

// A contiguous range of tiles [begin, end) whose full tiles are [full_begin, full_end); the rest are
// partial. Monotone bands always give this shape: partial tiles on the left edge, then full tiles,
// then partial tiles on the right edge (the diagonal).
struct TileRange {
    std::int64_t begin = 0, full_begin = 0, full_end = 0, end = 0;
    CCATTN_HD bool empty() const { return end <= begin; }
    CCATTN_HD std::int64_t count() const { return end > begin ? end - begin : 0; }
    CCATTN_HD bool is_full(std::int64_t t) const { return full_begin <= t && t < full_end; }
};

CCATTN_HD TileRange make_range(std::int64_t begin, std::int64_t end, std::int64_t full_begin, std::int64_t full_end) {
    if (end <= begin) return {begin, begin, begin, begin};
    full_begin = clamp(full_begin, begin, end);
    full_end = clamp(full_end, full_begin, end);
    return {begin, full_begin, full_end, end};
}

// Forward: the kv tiles q-tile `rows` visits: [floor(lo(m0) / tile_n), ceil(hi(m1-1) / tile_n)).
// A tile t is full iff lo(m1-1) <= t*tile_n and (t+1)*tile_n <= hi(m0).
template <class Band>
CCATTN_HD TileRange kv_tile_range(const Band& band, RowSpan rows, std::int64_t tile_n) {
    if (rows.empty()) return {};
    const RowLimits first = row_limits(band, rows.begin), last = row_limits(band, rows.end - 1);
    if (last.hi <= first.lo) return {};  // every row of the tile is empty
    return make_range(floor_div(first.lo, tile_n), ceil_div(last.hi, tile_n), ceil_div(last.lo, tile_n),
                      floor_div(first.hi, tile_n));
}

// First i in [begin, end) with pred(i) true, for pred false...false true...true; end if none.
template <class Pred>
CCATTN_HD std::int64_t partition_point(std::int64_t begin, std::int64_t end, Pred pred) {
    while (begin < end) {
        std::int64_t mid = begin + (end - begin) / 2;
        if (pred(mid)) end = mid;
        else begin = mid + 1;
    }
    return begin;
}

// The first row of [0, seqlen_q) whose hi exceeds key j, and whose lo does (seqlen_q if none), for a
// monotone band: binary searches. Band sources that know them (band tensors with their key rows,
// core/band_source.h) overload these.
template <class Band>
CCATTN_HD std::int64_t first_row_hi_above(const Band& band, std::int64_t j, std::int64_t seqlen_q) {
    return partition_point(0, seqlen_q, [&](std::int64_t i) { return band.hi(i) > j; });
}
template <class Band>
CCATTN_HD std::int64_t first_row_lo_above(const Band& band, std::int64_t j, std::int64_t seqlen_q) {
    return partition_point(0, seqlen_q, [&](std::int64_t i) { return band.lo(i) > j; });
}

// Backward: the q-tiles (packed, tile_m rows each) that see keys [n0, n0 + tile_n) of a sequence of
// seqlen_q queries. Rows seeing the tile are those with hi(i) > n0 and lo(i) < n1 (lo(i) > n1 - 1
// fails); the tile is full for rows with hi(i) >= n1 (hi(i) > n1 - 1) and lo(i) <= n0. So any
// monotone band works, from the rows where its edges pass the tile's first and last key.
template <class Band>
CCATTN_HD TileRange q_tile_range(const Band& band, std::int64_t n0, std::int64_t tile_n, std::int64_t seqlen_q,
                                 std::int64_t tile_m, std::int64_t group) {
    std::int64_t n1 = n0 + tile_n;
    std::int64_t i_begin = first_row_hi_above(band, n0, seqlen_q);
    std::int64_t i_end = first_row_lo_above(band, n1 - 1, seqlen_q);
    if (i_end <= i_begin) return {};
    std::int64_t full_rows_begin = first_row_hi_above(band, n1 - 1, seqlen_q);
    std::int64_t full_rows_end = first_row_lo_above(band, n0, seqlen_q);
    std::int64_t packed_rows = seqlen_q * group;
    // A q-tile is full when its first row is >= full_rows_begin and its last row < full_rows_end.
    std::int64_t full_end = full_rows_end >= seqlen_q ? num_tiles(packed_rows, tile_m)
                                                      : floor_div(full_rows_end * group, tile_m);
    return make_range(floor_div(i_begin * group, tile_m), ceil_div(i_end * group, tile_m),
                      ceil_div(full_rows_begin * group, tile_m), full_end);
}

// The packed rows (`group` query heads per position) that see key j: [begin, end), empty for keys
// outside [0, Sk). A packed row R sees j iff its query R / group does, and those rows are contiguous:
// the backward masks its transposed scores (rows = keys) by this range.
CCATTN_HD RowSpan packed_rows_seeing(const CompressedBand& band, std::int64_t j, std::int64_t seqlen_q,
                                     std::int64_t group) {
    if (j < 0 || j >= band.seqlen_k) return {};
    std::int64_t begin = 0, end = 0;
    band.rows_seeing(j, seqlen_q, begin, end);
    return {begin * group, end * group};
}

// Visible (query, key) pairs of one sequence and head: the FLOP count's basis.
template <class Band>
inline std::int64_t visible_pairs(const Band& band, std::int64_t seqlen_q) {
    std::int64_t pairs = 0;
    for (std::int64_t i = 0; i < seqlen_q; ++i) {
        std::int64_t lo = band.lo(i), hi = band.hi(i);
        pairs += hi > lo ? hi - lo : 0;
    }
    return pairs;
}

}  // namespace ccattn::core
