// ccattn public API: attention of new queries over a KV cache (after flash-attn's
// flash_attn_with_kvcache), optionally appending this step's keys and values to the cache first.
//
// Shapes (last dimension contiguous, other strides free, in elements):
//   q             [B, Sq, Hq, Dqk]                      the new queries (decode: Sq = 1)
//   k_cache       [B, S_cache, Hkv, Dqk]                contiguous cache, or
//                 [num_pages, page_size, Hkv, Dqk]      paged (page_table given; page_size a multiple of
//                                                       16, at most 256)
//   v_cache       as k_cache with Dv
//   page_table    int32 [B, max_pages]                  key j of sequence b: row j % page_size of page
//                                                       page_table[b, j / page_size]
//   cache_seqlens int32 [B]                             valid rows of each sequence before this call
//   k_new, v_new  [B, S_new, Hkv, Dqk | Dv] (optional)  written to rows cache_seqlens[b] .. + S_new,
//                                                       then attended to: sequence b has
//                                                       Sk_b = cache_seqlens[b] + S_new keys
//   query_pos     int32 [B] (optional)                  absolute position p_b of query 0 of sequence b
//   out           [B, Sq, Hq, Dv]; lse float32 [B, Hq, Sq] (optional)
// Masks: the band (kind band) or its per-element form (kind mask_mod: on the CPU the host predicate,
// called with the sequence's b). Sequence b uses the band for (Sq, Sk_b) with delta shifted by p_b
// (docs/semantics.md, chunked prefill): query i sees key j iff lo(i) <= j < hi(i) computed with
// delta_b = delta + p_b, delta the mask's diag_offset or its default for (Sq, Sk_b).
//
// Shapes, dtypes, devices and strides are validated on the host. Contents of device tensors
// (cache_seqlens, page_table, query_pos) are the caller's contract and are never copied to the host,
// so a CUDA call is capturable in a CUDA graph: 0 <= cache_seqlens[b] and cache_seqlens[b] + S_new <=
// capacity (S_cache, or max_pages * page_size), page indices in [0, num_pages) for the pages those keys
// use, no page shared by two sequences that append. Violations are undefined behaviour. Host
// tensors are checked and rejected naming the argument, with nothing written.
#pragma once

#include <optional>

#include "ccattn/attention.h"
#include "ccattn/mask.h"
#include "ccattn/status.h"
#include "ccattn/tensor.h"

namespace ccattn {

struct KvCacheArgs {
    Tensor q;
    Tensor k_cache, v_cache;  // written at the appended rows when k_new / v_new are given
    Tensor page_table;        // absent: contiguous cache
    Tensor cache_seqlens;
    Tensor k_new, v_new;      // both or neither
    Tensor query_pos;         // absent: p_b = 0
    Tensor out;               // written
    Tensor lse;               // written when defined
    Mask mask;
    std::optional<float> scale;  // default 1 / sqrt(Dqk)
    // CUDA: CTAs that share one sequence's keys (split-KV), combined exactly afterwards. 0 lets a
    // heuristic choose from the SM count, the work and the L2 size; 1 = no split. At most 256.
    int num_splits = 0;
    Backend backend = Backend::automatic;
    int num_threads = 0;
    void* stream = nullptr;
};

Status attention_with_kvcache(const KvCacheArgs& args);

}  // namespace ccattn
