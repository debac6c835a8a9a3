// Band tensors (Mask::band_tensors) as the tile schedule sees them: one int32 or int64 tensor per
// edge, read per row, and a band type with lo(i) / hi(i) clamped to [0, Sk] like the built-in band,
// so core/schedule.h classifies its tiles from their edge rows with no special case.
#pragma once

#include <cstdint>

#include "core/band.h"
#include "core/host_device.h"

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

struct BandRows {
    RowTensor lo, hi;
};

// The band of sequence b: its query i is tensor row row0 + i (row0 = the sequence's first row
// with varlen, 0 otherwise).
struct TensorBand {
    BandRows rows;
    int b = 0;
    std::int64_t row0 = 0;
    std::int64_t seqlen_k = 0;

    CCATTN_HD std::int64_t lo(std::int64_t i) const { return clamp(rows.lo.at(b, row0 + i), 0, seqlen_k); }
    CCATTN_HD std::int64_t hi(std::int64_t i) const { return clamp(rows.hi.at(b, row0 + i), 0, seqlen_k); }

    // Rows [begin, end) of [0, seqlen_q) that see key j: hi(i) > j holds on a suffix of the rows and
    // lo(i) <= j on a prefix (both edges non-decreasing), so two binary searches find them.
    CCATTN_HD void rows_seeing(std::int64_t j, std::int64_t seqlen_q, std::int64_t& begin, std::int64_t& end) const {
        begin = first_row(seqlen_q, [&](std::int64_t i) { return hi(i) > j; });
        end = first_row(seqlen_q, [&](std::int64_t i) { return lo(i) > j; });
        if (end < begin) end = begin;
    }

  private:
    // The first row of [0, n) where `after` holds (n if none), for a predicate false, then true.
    template <class After>
    CCATTN_HD static std::int64_t first_row(std::int64_t n, After&& after) {
        std::int64_t a = 0, b = n;
        while (a < b) {
            const std::int64_t mid = a + (b - a) / 2;
            if (after(mid)) b = mid; else a = mid + 1;
        }
        return a;
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
