// Band tensors (Mask::band_tensors) as the tile schedule sees them: one int32 or int64 tensor per
// edge, read per row, and a band type with lo(i) / hi(i) clamped to [0, Sk] like the built-in band,
// so core/schedule.h classifies its tiles from their edge rows with no special case.
#pragma once

#include <cstdint>

#include "core/band.h"
#include "core/host_device.h"
#include "core/schedule.h"

namespace ccattn::core {

// One edge tensor, [B, Sq] (batch_stride set) or [Tq] with varlen (batch_stride 0, rows global).
struct RowTensor {
    const void* data = nullptr;
    bool wide = false;  // int64, else int32
    std::int64_t batch_stride = 0, row_stride = 0;

    CCATTN_HD std::int64_t at(int b, std::int64_t row) const {
        const std::int64_t x = b * batch_stride + row * row_stride;
        return wide ? static_cast<const std::int64_t*>(data)[x] : static_cast<const std::int32_t*>(data)[x];
    }
};

// Per key of a call, the two rows its sequence's band starts and stops seeing it at (TensorBand::
// hi_above / lo_above), found once for every key by a device pass (src/cuda/band_key_rows.cu) so that
// the backward's tile schedule and key masks look them up instead of searching the rows per CTA.
struct KeyRows {
    const std::int32_t* rows = nullptr;  // 2 per key row of the k tensor (B * Sk, or total_k with varlen)
};

// The first key row of sequence b in the k tensor (dense rows): where its keys' KeyRows entries
// start, and its keys' rows of the backward's fp32 dK / dV accumulators.
CCATTN_HD std::int64_t key_row0(bool varlen, int b, std::int64_t row_k, std::int64_t seqlen_k) {
    return varlen ? row_k : std::int64_t(b) * seqlen_k;
}

struct BandRows {
    RowTensor lo, hi;
    KeyRows keys;  // null: binary searches over the rows
};

// The band of sequence b: its query i is tensor row row0 + i (row0 = the sequence's first row
// with varlen, 0 otherwise); rows.keys, when set, starts at the sequence's first key.
struct TensorBand {
    BandRows rows;
    int b = 0;
    std::int64_t row0 = 0;
    std::int64_t seqlen_k = 0;

    CCATTN_HD std::int64_t lo(std::int64_t i) const { return clamp(rows.lo.at(b, row0 + i), 0, seqlen_k); }
    CCATTN_HD std::int64_t hi(std::int64_t i) const { return clamp(rows.hi.at(b, row0 + i), 0, seqlen_k); }

    // The first row of [0, seqlen_q) with hi(i) > j, and the first with lo(i) > j (seqlen_q if none):
    // each edge is non-decreasing, so the rows where it exceeds j are a suffix. Past the keys neither
    // edge (clamped to Sk) exceeds j; before them both do.
    CCATTN_HD std::int64_t hi_above(std::int64_t j, std::int64_t seqlen_q) const {
        if (j < 0 || j >= seqlen_k || rows.keys.rows == nullptr)
            return search_hi_above(j, seqlen_q);
        return rows.keys.rows[2 * j];
    }
    CCATTN_HD std::int64_t lo_above(std::int64_t j, std::int64_t seqlen_q) const {
        if (j < 0 || j >= seqlen_k || rows.keys.rows == nullptr)
            return search_lo_above(j, seqlen_q);
        return rows.keys.rows[2 * j + 1];
    }
    // The same by binary search over the rows (what the key-rows pass stores).
    CCATTN_HD std::int64_t search_hi_above(std::int64_t j, std::int64_t seqlen_q) const {
        if (j >= seqlen_k) return seqlen_q;
        return partition_point(0, seqlen_q, [&](std::int64_t i) { return hi(i) > j; });
    }
    CCATTN_HD std::int64_t search_lo_above(std::int64_t j, std::int64_t seqlen_q) const {
        if (j >= seqlen_k) return seqlen_q;
        return partition_point(0, seqlen_q, [&](std::int64_t i) { return lo(i) > j; });
    }

    // Rows [begin, end) of [0, seqlen_q) that see key j: hi(i) > j holds on a suffix of the rows and
    // lo(i) <= j on a prefix.
    CCATTN_HD void rows_seeing(std::int64_t j, std::int64_t seqlen_q, std::int64_t& begin, std::int64_t& end) const {
        begin = hi_above(j, seqlen_q);
        end = lo_above(j, seqlen_q);
        if (end < begin) end = begin;
    }
};

// Which clamped edge decreases from row i - 1 to row i (1 <= i < Sq) of a sequence, lo first: the
// host validation and the device check (src/cuda/band_check.cu) name the same row and edge.
enum class EdgeError : std::uint8_t { none, lo, hi };
CCATTN_HD EdgeError edge_error(const TensorBand& band, std::int64_t i) {
    if (band.lo(i) < band.lo(i - 1)) return EdgeError::lo;
    if (band.hi(i) < band.hi(i - 1)) return EdgeError::hi;
    return EdgeError::none;
}

// What the error message names: the edge, the row and sequence, and the clamped values.
struct BandEdgeError {
    EdgeError edge = EdgeError::none;
    int b = 0;
    std::int64_t row = 0, now = 0, before = 0, seqlen_k = 0;
};
CCATTN_HD BandEdgeError describe_edge_error(const TensorBand& band, int b, std::int64_t i, EdgeError e) {
    const bool lo = e == EdgeError::lo;
    return {e, b, i, lo ? band.lo(i) : band.hi(i), lo ? band.lo(i - 1) : band.hi(i - 1), band.seqlen_k};
}

}  // namespace ccattn::core
