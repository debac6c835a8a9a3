// The Hopper forward kernel's parameters: the validated call, the work order, the TMA descriptors
// of K and V (encoded on the host, passed as a __grid_constant__ parameter) and, for split-KV, where
// the splits' partial results go.
#pragma once

#include <cuda.h>

#include "core/params.h"
#include "decode/split_work.h"
#include "sm90/tile_scheduler.h"

namespace ccattn::sm90 {

template <class Traits>
struct KernelParams {
    core::AttnParams attn;
    TileScheduler scheduler;
    // Work tiles after the grid's first: the next is gridDim.x + this counter's old value, zeroed
    // before the launch; null: the static round-robin (tile_queue.h).
    unsigned long long* tile_counter = nullptr;
    typename Traits::TmaK tma_k;
    typename Traits::TmaV tma_v;
    typename Traits::ShapeKV shape_k;   // (rows, Dqk, kv heads, batch)
    typename Traits::ShapeKV shape_vt;  // (Dv, rows, kv heads, batch)
    // Q by TMA, one box per 64 columns of a warp group's 64 packed rows (row_map.h), where the call
    // allows it (q_by_tma); otherwise the consumers gather their rows (query_load.h).
    CUtensorMap tma_q;
    bool q_by_tma = false;
    // A paged cache (attn.cache.page_table): K and V through these maps instead (paged_kv.h).
    CUtensorMap page_k, page_v;
    // paged and zero_v_tail restate attn.cache (page_table, seqlens != nullptr) as flags on purpose: the
    // producer runs at a few dozen registers, and the pointer tests hoisted out of its loop cost ~90
    // more spill instructions there (SASS, d128, at 24 registers).
    bool paged = false;
    int page_chunk_rows = 0;  // rows per box (paged_kv.h)
    // Rows of a kv-cache call past a sequence's keys hold anything (NaN too); TMA zero-fills only
    // outside the tensor, so the consumers zero them in V before P V reads them.
    bool zero_v_tail = false;
    // Split-KV (scheduler.splits > 1): fp32 partial outputs and lse instead of out / lse.
    decode::SplitWork split;
};

}  // namespace ccattn::sm90
