// The one plain-data description of an attention call that every backend reads. Filled and
// validated in one place (src/api/validate.cpp); pointers may be host or device memory.
#pragma once

#include <cstdint>

#include "ccattn/mask.h"
#include "ccattn/tensor.h"
#include "core/band.h"
#include "core/band_tensors.h"
#include "core/host_device.h"

namespace ccattn::core {

// Element strides of a [B, S, H, D] tensor (batch = 0 for varlen [T, H, D]); D is contiguous.
struct Strides {
    std::int64_t batch = 0, row = 0, head = 0;
};

// Block-sparse tile lists, as int32 arrays indexed [b, h, tile(, slot)]; head stride 0 broadcasts.
struct TileLists {
    const std::int32_t* count = nullptr;
    const std::int32_t* index = nullptr;
    std::int64_t count_batch_stride = 0, count_head_stride = 0, count_tile_stride = 0;
    std::int64_t index_batch_stride = 0, index_head_stride = 0, index_tile_stride = 0;

    // The list of (b, h, tile): its length and its entries.
    CCATTN_HD int length(int b, int h, std::int64_t tile) const {
        return count[b * count_batch_stride + h * count_head_stride + tile * count_tile_stride];
    }
    CCATTN_HD const std::int32_t* entries(int b, int h, std::int64_t tile) const {
        return index + b * index_batch_stride + h * index_head_stride + tile * index_tile_stride;
    }
};

// A KV cache (ccattn/kvcache.h) as the kernels read it: k / v point at the cache, whose keys of sequence
// b are its first seqlens[b] rows followed by the new_rows appended by this call. Paged caches map key j
// to row j % page_size of page page_table[b, j / page_size] (k_strides.batch is then the page stride).
// Device contents are trusted (the caller's contract); host contents are checked (src/api).
struct KvCache {
    const std::int32_t* seqlens = nullptr;     // [batch]: rows before this call; null: not a cache call
    const std::int32_t* page_table = nullptr;  // [batch, max_pages]; null: one contiguous cache per sequence
    std::int64_t page_table_stride = 0;
    std::int64_t page_size = 0;
    std::int64_t num_pages = 0;                // pages of the paged cache (its dimension 0)
    const std::int32_t* query_pos = nullptr;   // [batch]: absolute position of query 0 (adds to delta); may be null
    std::int64_t new_rows = 0;                 // rows of k_new / v_new per sequence
    const void* k_new = nullptr;
    const void* v_new = nullptr;
    Strides k_new_strides, v_new_strides;  // [B, S_new, Hkv, D]
};

struct AttnParams {
    // sizes
    int batch = 0;
    std::int64_t seqlen_q = 0, seqlen_k = 0;  // fixed lengths, or the largest sequence for varlen
    std::int64_t total_q = 0, total_k = 0;    // rows of the q / k tensors (B * S for fixed length)
    int heads_q = 0, heads_kv = 0, group = 1;  // group = heads_q / heads_kv
    int dim_qk = 0, dim_v = 0;
    DType dtype = DType::bf16;
    Device device = Device::cpu;
    const std::int32_t* cu_seqlens_q = nullptr;  // [batch + 1]; null for fixed length
    const std::int32_t* cu_seqlens_k = nullptr;

    // forward tensors
    const void* q = nullptr;
    const void* k = nullptr;
    const void* v = nullptr;
    void* out = nullptr;
    float* lse = nullptr;  // may be null in the forward
    Strides q_strides, k_strides, v_strides, out_strides;
    std::int64_t lse_batch_stride = 0, lse_head_stride = 0;  // row stride is 1

    // backward tensors (null in the forward)
    const void* dout = nullptr;
    void* dq = nullptr;
    void* dk = nullptr;
    void* dv = nullptr;
    Strides dout_strides, dq_strides, dk_strides, dv_strides;

    float scale = 1.f;
    float scale_log2 = 1.f;  // scale * log2(e), for exp2-based softmax

    // mask
    MaskKind mask_kind = MaskKind::band;
    BandSpec band;
    std::int64_t sparse_tile_m = 0, sparse_tile_n = 0;  // block-sparse tile sizes
    TileLists sparse_full, sparse_partial;
    BandRows band_rows;  // band tensors (mask_kind == band_tensors)
    bool check_band_rows = false;  // device band tensors the backend checks first (BandTensors::validate)
    std::int64_t band_visits = 0;  // the backward's q-tile visits per KV head, counted by that check; 0: unknown
    const Mask* host_mask = nullptr;  // host callables (mask_mod, custom band) for the CPU backend

    KvCache cache;      // kv-cache calls only
    int num_splits = 0;  // split-KV CTAs per sequence on CUDA: 0 = heuristic, 1 = no split

    int num_threads = 0;
    void* stream = nullptr;
    bool deterministic = false;  // backward: BackwardArgs::deterministic

    CCATTN_HD bool varlen() const { return cu_seqlens_q != nullptr; }
};

// One sequence of the batch: its lengths and the tensor row where it starts.
struct Sequence {
    std::int64_t seqlen_q = 0, seqlen_k = 0;
    std::int64_t row_q = 0, row_k = 0;  // first row in the q / k tensors (0 for fixed length)
};

CCATTN_HD Sequence sequence(const AttnParams& p, int b) {
    if (p.cache.seqlens != nullptr) return {p.seqlen_q, std::int64_t(p.cache.seqlens[b]) + p.cache.new_rows, 0, 0};
    if (!p.varlen()) return {p.seqlen_q, p.seqlen_k, 0, 0};
    std::int64_t q0 = p.cu_seqlens_q[b], k0 = p.cu_seqlens_k[b];
    return {p.cu_seqlens_q[b + 1] - q0, p.cu_seqlens_k[b + 1] - k0, q0, k0};
}

// Element offset of (batch b, sequence row i, head h) in a tensor, given its sequence start row.
CCATTN_HD std::int64_t offset(const Strides& s, int b, std::int64_t row0, std::int64_t i, int h) {
    return b * s.batch + (row0 + i) * s.row + h * s.head;
}

// Element offset of key j of sequence b, head h, in k or v (strides s): through the page table for
// a paged cache. Keys are below 2^31 (checked on the host), so the page arithmetic is 32-bit.
CCATTN_HD std::int64_t key_offset(const AttnParams& p, const Strides& s, int b, const Sequence& seq, std::int64_t j,
                                  int h) {
    if (p.cache.page_table == nullptr) return offset(s, b, seq.row_k, j, h);
    const std::uint32_t jj = std::uint32_t(j), size = std::uint32_t(p.cache.page_size);
    const std::int64_t page = p.cache.page_table[b * p.cache.page_table_stride + jj / size];
    return page * s.batch + std::int64_t(jj % size) * s.row + h * s.head;
}

// The built-in band of sequence b: the mask's band for its lengths, shifted by the queries' absolute
// position in a cache call (chunked prefill: position p adds p to delta, docs/semantics.md).
CCATTN_HD CompressedBand builtin_band(const AttnParams& p, int b, const Sequence& s) {
    CompressedBand band = p.band.for_sequence(s.seqlen_q, s.seqlen_k);
    if (p.cache.query_pos != nullptr) band.diag_offset += p.cache.query_pos[b];
    return band;
}

// The band tensors' band of sequence b (mask_kind == band_tensors).
CCATTN_HD TensorBand tensor_band(const AttnParams& p, int b, const Sequence& s) {
    TensorBand band{p.band_rows, b, s.row_q, s.seqlen_k};
    if (band.rows.keys.rows != nullptr) band.rows.keys.rows += 2 * key_row0(p.varlen(), b, s.row_k, p.seqlen_k);
    return band;
}

CCATTN_HD std::int64_t lse_offset(const AttnParams& p, int b, std::int64_t row0, std::int64_t i, int h) {
    return b * p.lse_batch_stride + h * p.lse_head_stride + row0 + i;
}

}  // namespace ccattn::core
