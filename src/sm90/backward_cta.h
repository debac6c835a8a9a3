// Where one CTA of the Hopper backward works: its batch, KV head, sequence, first key and q chunk.
// Every thread derives it from the params and the block index, so no role has to publish it.
#pragma once

#include <cstdint>

#include "core/band.h"
#include "core/band_source.h"
#include "core/params.h"
#include "core/schedule.h"
#include "sm80/backward_params.h"

namespace ccattn::sm90 {

struct BackwardCta {
    int b = 0, kv_head = 0, chunk = 0;
    std::int64_t n_block = 0, n0 = 0;  // kv tile and its first key
    core::Sequence seq;
    core::SequenceBand band;  // the built-in band or band tensors (core/band_source.h)
    std::int64_t q_row0 = 0;  // dense row of the sequence's first query (workspaces)
    std::int64_t k_row0 = 0;  // dense row of its first key

    // Grid: x = (chunk, kv tile), chunk-major so that the CTAs of one chunk run together and share
    // Q / dO rows in L2 (kv tiles from the last in deterministic mode: sm80::AddOrder); y = KV head;
    // z = batch.
    __device__ static BackwardCta make(const sm80::BackwardParams& bp, int kv_tile, bool deterministic) {
        const core::AttnParams& p = bp.p;
        const unsigned kv_tiles = unsigned(core::num_tiles(p.seqlen_k, kv_tile));
        BackwardCta c;
        c.b = int(blockIdx.z);
        c.kv_head = int(blockIdx.y);
        c.chunk = int(blockIdx.x / kv_tiles);
        c.n_block = sm80::AddOrder::kv_tile_of(blockIdx.x % kv_tiles, kv_tiles, deterministic);
        c.n0 = c.n_block * kv_tile;
        c.seq = core::sequence(p, c.b);
        c.band = core::sequence_band(p, c.b, c.seq);
        c.q_row0 = p.varlen() ? c.seq.row_q : std::int64_t(c.b) * p.seqlen_q;
        c.k_row0 = core::key_row0(p.varlen(), c.b, c.seq.row_k, p.seqlen_k);
        return c;
    }
};

}  // namespace ccattn::sm90
