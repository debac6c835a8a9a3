// The units of work of the CPU backend: a block of up to kTileM query rows and a block of up to
// kTileN keys of one sequence. Every mask mechanism is a way of pairing such blocks.
#pragma once

#include <cstdint>

#include "core/params.h"
#include "core/schedule.h"
#include "cpu/simd.h"

namespace ccattn::cpu {

// 64 x 64: a 64-key fp32 K or V tile at d = 128 is 32 KB, so a q-tile's working set (Q, K^T, V, S,
// O) stays in L2 while each micro-kernel streams one operand from L1; 64 columns are 4 AVX-512
// vectors, and 64 is the GPU kernels' kv-tile granularity, so the schedule is exercised alike.
constexpr int kTileM = 128;  // query rows per block
constexpr int kTileN = 64;  // keys per block
static_assert(kTileM % kLanes == 0 && kTileN % kLanes == 0, "score tiles are rows of whole vectors");

// Row r is query i[r] (sequence-local) of query head h[r]; lo[r], hi[r] its band (band masks only).
struct QueryBlock {
    int b = 0;
    core::Sequence seq;
    int rows = 0;
    std::int64_t i[kTileM];
    int h[kTileM];
    std::int64_t lo[kTileM], hi[kTileM];
};

// Keys [n0, n0 + count) of KV head kvh of sequence b, count <= kTileN.
struct KeyBlock {
    int b = 0;
    core::Sequence seq;
    int kvh = 0;
    std::int64_t n0 = 0;
    int count = 0;
};

// GQA-packed q-tile mt of KV head kvh (core/schedule.h): packed row mt * kTileM + r is query
// (packed row) / G of head kvh * G + (packed row) % G.
inline QueryBlock packed_block(const core::AttnParams& p, int b, const core::Sequence& seq, int kvh, std::int64_t mt) {
    QueryBlock qb;
    qb.b = b;
    qb.seq = seq;
    const std::int64_t r0 = mt * kTileM, packed = seq.seqlen_q * p.group;
    qb.rows = int(packed - r0 < kTileM ? packed - r0 : kTileM);
    for (int r = 0; r < qb.rows; ++r) {
        qb.i[r] = (r0 + r) / p.group;
        qb.h[r] = kvh * p.group + int((r0 + r) % p.group);
    }
    return qb;
}

// Query positions [i0, i0 + rows) of query head h.
inline QueryBlock head_block(int b, const core::Sequence& seq, int h, std::int64_t i0, int rows) {
    QueryBlock qb;
    qb.b = b;
    qb.seq = seq;
    qb.rows = rows;
    for (int r = 0; r < rows; ++r) {
        qb.i[r] = i0 + r;
        qb.h[r] = h;
    }
    return qb;
}

template <class Band>
void set_band(QueryBlock& qb, const Band& band) {
    for (int r = 0; r < qb.rows; ++r) {
        qb.lo[r] = band.lo(qb.i[r]);
        qb.hi[r] = band.hi(qb.i[r]);
    }
}

// Keys [n0, min(n0 + kTileN, end)) of KV head kvh.
inline KeyBlock key_block(int b, const core::Sequence& seq, int kvh, std::int64_t n0, std::int64_t end) {
    return {b, seq, kvh, n0, int(end - n0 < kTileN ? end - n0 : kTileN)};
}

// Row of query i of sequence b in the dense per-row arrays (b * Sq + i, or the varlen row).
inline std::int64_t dense_row(const core::AttnParams& p, int b, const core::Sequence& seq, std::int64_t i) {
    return (p.varlen() ? seq.row_q : b * p.seqlen_q) + i;
}

}  // namespace ccattn::cpu
