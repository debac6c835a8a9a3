// K and V of a paged KV cache through TMA: key j of sequence b is row j % page_size of page
// page_table[b, j / page_size], so one kv tile gathers chunks of rows that never cross a page, each
// one box per 64 columns from its own page. A chunk is the largest power of two of rows, 16 to
// kBlockN, that divides the page size (every page size is a multiple of 16): small boxes cost TMA
// issue time (16-row boxes moved a paged decode at half the contiguous rate), so pages of 64 take
// two boxes per tile and column block, not eight. The map is 4-D, (head dim, kv heads, page rows,
// pages), and lands in the same 128B-swizzled layout as the contiguous tile; a chunk past the
// sequence's keys reads page `num_pages`, outside the map, which TMA fills with zeros.
#pragma once

#include <cstdint>

#include <cuda.h>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cutlass/cuda_host_adapter.hpp>

#include "core/params.h"

namespace ccattn::sm90 {

constexpr int kMinChunkRows = 16;

// Rows per chunk for pages of page_size rows and kv tiles of block_n keys.
inline int page_chunk_rows(std::int64_t page_size, int block_n) {
    int rows = block_n;
    while (rows > kMinChunkRows && page_size % rows != 0) rows /= 2;
    return rows;
}

// Byte strides of a paged k_cache or v_cache [num_pages, page_size, heads_kv, dim] (element strides
// st, 16-bit elements) as the map takes them: (head, page row, page); extent-1 dimensions get a
// harmless one.
inline void page_strides(const core::AttnParams& p, const core::Strides& st, int dim, std::int64_t (&bytes)[3]) {
    auto of = [&](std::int64_t stride, std::int64_t extent) -> std::int64_t { return 2 * (extent > 1 ? stride : dim); };
    bytes[0] = of(st.head, p.heads_kv);
    bytes[1] = of(st.row, p.cache.page_size);
    bytes[2] = of(st.batch, p.cache.num_pages);
}

// Whether TMA can address that cache (else the portable split kernel runs the call).
inline bool page_map_ok(const core::AttnParams& p, const void* base, const core::Strides& st, int dim) {
    const core::KvCache& c = p.cache;
    if (c.page_table == nullptr || c.page_size % kMinChunkRows != 0 || c.num_pages < 1 ||
        c.num_pages >= (std::int64_t(1) << 31) || reinterpret_cast<std::uintptr_t>(base) % 16 != 0)
        return false;
    std::int64_t strides[3];
    page_strides(p, st, dim, strides);
    for (std::int64_t s : strides)
        if (s <= 0 || s % 16 != 0 || s >= (std::int64_t(1) << 40)) return false;
    return true;
}

// Its map with boxes of chunk_rows rows; false where page_map_ok is (or the driver refuses it).
inline bool encode_page_map(CUtensorMap& map, const core::AttnParams& p, const void* base, const core::Strides& st,
                            int dim, int chunk_rows) {
    if (!page_map_ok(p, base, st, dim)) return false;
    const core::KvCache& c = p.cache;
    std::int64_t strides[3];
    page_strides(p, st, dim, strides);
    const cuuint64_t dims[4] = {cuuint64_t(dim), cuuint64_t(p.heads_kv), cuuint64_t(c.page_size), cuuint64_t(c.num_pages)};
    const cuuint64_t byte_strides[3] = {cuuint64_t(strides[0]), cuuint64_t(strides[1]), cuuint64_t(strides[2])};
    const cuuint32_t box[4] = {64, 1, cuuint32_t(chunk_rows), 1};
    const cuuint32_t element_strides[4] = {1, 1, 1, 1};
    const CUtensorMapDataType type =
        p.dtype == DType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    return cutlass::call_cuTensorMapEncodeTiled(&map, type, 4, const_cast<void*>(base), dims, byte_strides, box,
                                                element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// The pages of kv tile n's chunks (keys n * kBlockN ..) of sequence b; chunks past the keys get page
// `num_pages`, which TMA reads as zeros. Looked up before the stage is free, so that the table loads
// overlap the wait, and once for K and V.
template <int kBlockN>
struct TilePages {
    static constexpr int kMaxChunks = kBlockN / kMinChunkRows;
    int page[kMaxChunks];

    CUTE_DEVICE void look_up(const core::AttnParams& p, int chunk_rows, int b, int n, int seqlen_k) {
        const core::KvCache& c = p.cache;
        const std::int32_t* table = c.page_table + b * c.page_table_stride;
        CUTE_UNROLL
        for (int k = 0; k < kMaxChunks; ++k) {
            const int j = n * kBlockN + k * chunk_rows;
            if (k * chunk_rows < kBlockN)
                page[k] = j < seqlen_k ? table[std::uint32_t(j) / std::uint32_t(c.page_size)] : int(c.num_pages);
        }
    }

    // Issues the boxes of kv tile n, head kv_head, into `tile`: one stage of a (kBlockN, kDim) K-major
    // SW128 buffer (column block k of 64 after the blocks before it, as the contiguous TMA lays it out;
    // V's MN-major (kDim, kBlockN) stage is the same bytes). By the one producer thread; the bytes count
    // on `barrier` like the contiguous tile's.
    template <int kDim, class Element>
    CUTE_DEVICE void load(const CUtensorMap& map, std::uint64_t* barrier, Element* tile, const core::AttnParams& p,
                          int chunk_rows, int n, int kv_head) const {
        constexpr auto kHint = static_cast<std::uint64_t>(cute::TMA::CacheHintSm90::EVICT_NORMAL);
        CUTE_UNROLL
        for (int k = 0; k < kMaxChunks; ++k) {
            if (k * chunk_rows >= kBlockN) break;
            const int row = int(std::uint32_t(n * kBlockN + k * chunk_rows) % std::uint32_t(p.cache.page_size));
            CUTE_UNROLL
            for (int col = 0; col < kDim; col += 64)
                cute::SM90_TMA_LOAD_4D::copy(&map, barrier, kHint, tile + (k * chunk_rows + (col / 64) * kBlockN) * 64, col,
                                             kv_head, row, page[k]);
        }
    }
};

}  // namespace ccattn::sm90
