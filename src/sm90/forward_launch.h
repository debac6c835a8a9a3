// Host side of one Hopper forward instantiation: encodes the Q, K and V tensor maps (a paged cache's
// too), sizes the persistent grid and launches forward_kernel. Included only by the instantiation files.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <string>

#include <cuda_runtime.h>
#include <cute/tensor.hpp>

#include "cuda/memory_pool.h"
#include "sm90/forward_kernel.h"
#include "sm90/kernel_params.h"
#include "sm90/launch.h"
#include "sm90/paged_kv.h"
#include "sm90/row_map.h"

namespace ccattn::sm90 {

// The persistent grid: a CTA per SM, or fewer where CCATTN_SM90_GRID=n in the environment caps it
// (read per launch). Small problems then give each CTA many tiles, so that the GPU tests and the
// sanitizers cover the tile ring's reuse (tile_queue.h) without a problem of thousands of tiles.
inline int grid_limit(int sms) {
    const char* e = std::getenv("CCATTN_SM90_GRID");
    const int n = e != nullptr ? std::atoi(e) : 0;
    return n > 0 ? std::min(n, sms) : sms;
}

inline Status cuda_status(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return Status::success();
    return {Code::cuda_error, "", std::string("sm90 forward: ") + what + ": " + cudaGetErrorString(e)};
}

template <class Traits>
Status launch_forward(const core::AttnParams& p, const decode::SplitWork* split) {
    using namespace cute;
    using Element = typename Traits::Element;
    KernelParams<Traits> kp;
    kp.attn = p;
    kp.scheduler = TileScheduler::make(p, Traits::kBlockM, split != nullptr ? split->splits : 1);
    if (split != nullptr) kp.split = *split;
    kp.zero_v_tail = p.cache.seqlens != nullptr;
    if (p.cache.page_table != nullptr) {
        kp.paged = true;
        kp.page_chunk_rows = page_chunk_rows(p.cache.page_size, Traits::kBlockN);
        if (!encode_page_map(kp.page_k, p, p.k, p.k_strides, Traits::kDimQK, kp.page_chunk_rows) ||
            !encode_page_map(kp.page_v, p, p.v, p.v_strides, Traits::kDimV, kp.page_chunk_rows))
            return Status::unsupported("k_cache", "the sm90 kernel cannot address this paged cache by TMA");
    }
    const std::int64_t tiles = kp.scheduler.num_tiles();
    if (tiles == 0) return Status::success();  // no query rows: nothing to write
    // Band and mask_mod tiles pack the whole GQA group; block-sparse ones hold one head.
    const int pack = p.mask_kind == MaskKind::block_sparse ? 1 : p.group;
    const CUtensorMapDataType q_type =
        p.dtype == DType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    kp.q_by_tma = encode_row_map(kp.tma_q, p.q, q_type, 2, std::uint64_t(p.varlen() ? p.total_q : p.seqlen_q),
                                 std::uint64_t(p.varlen() ? 1 : p.batch), p.q_strides, Traits::kDimQK, p, pack,
                                 Traits::kRowsPerWarpGroup, 64);

    // Varlen: one batch entry of total_k rows, sequences start at cu_seqlens_k[b]. A tensor map
    // needs every extent >= 1; with no keys at all it is encoded but never used.
    const bool varlen = p.varlen();
    const int rows_k = int(std::max<std::int64_t>(1, varlen ? p.total_k : p.seqlen_k));
    const int batch = varlen ? 1 : p.batch;
    kp.shape_k = make_shape(rows_k, int32_t(Traits::kDimQK), int32_t(p.heads_kv), int32_t(batch));
    kp.shape_vt = make_shape(int32_t(Traits::kDimV), rows_k, int32_t(p.heads_kv), int32_t(batch));
    // A tensor map needs every stride in 16-byte units, also for extent-1 dimensions whose stride
    // the caller may have left arbitrary: those get a harmless one.
    auto stride_of = [](std::int64_t stride, std::int64_t extent) {
        return extent > 1 ? stride : std::int64_t(Traits::kDimQK);
    };
    Tensor mK = make_tensor(make_gmem_ptr(static_cast<Element const*>(p.k)), kp.shape_k,
                            make_stride(stride_of(p.k_strides.row, rows_k), _1{}, stride_of(p.k_strides.head, p.heads_kv),
                                        stride_of(p.k_strides.batch, batch)));
    Tensor mVt = make_tensor(make_gmem_ptr(static_cast<Element const*>(p.v)), kp.shape_vt,
                             make_stride(_1{}, stride_of(p.v_strides.row, rows_k), stride_of(p.v_strides.head, p.heads_kv),
                                         stride_of(p.v_strides.batch, batch)));
    kp.tma_k = make_tma_copy(SM90_TMA_LOAD{}, mK, take<0, 2>(typename Traits::SmemLayoutK{}),
                             Shape<Int<Traits::kBlockN>, Int<Traits::kDimQK>>{}, _1{});
    kp.tma_v = make_tma_copy(SM90_TMA_LOAD{}, mVt, take<0, 2>(typename Traits::SmemLayoutV{}),
                             Shape<Int<Traits::kDimV>, Int<Traits::kBlockN>>{}, _1{});

    int device = 0, sms = 0;
    Status s = cuda_status(cudaGetDevice(&device), "cudaGetDevice");
    if (!s.ok()) return s;
    s = cuda_status(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "SM count");
    if (!s.ok()) return s;
    auto kernel = forward_kernel<Traits>;
    s = cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Traits::kSharedBytes),
                    "shared memory size");
    if (!s.ok()) return s;
    const int grid = int(std::min<std::int64_t>(tiles, grid_limit(sms)));
    auto stream = static_cast<cudaStream_t>(p.stream);
    // The dynamic schedule (tile_queue.h) where a CTA gets more than one tile and tiles may differ
    // in cost (not split-KV's equal shares). Its counter is stream-ordered and zeroed per call, so
    // that calls on other streams never share it.
    void* counter = nullptr;
    if (tiles > grid && kp.scheduler.splits == 1) {
        if (!(s = cuda::retain_pool_memory(device)).ok()) return s;
        s = cuda_status(cudaMallocAsync(&counter, sizeof(unsigned long long), stream), "cudaMallocAsync of the tile counter");
        if (!s.ok()) return s;
        kp.tile_counter = static_cast<unsigned long long*>(counter);
    }
    const char* what = "cudaMemsetAsync of the tile counter";
    cudaError_t e = counter != nullptr ? cudaMemsetAsync(counter, 0, sizeof(unsigned long long), stream) : cudaSuccess;
    if (e == cudaSuccess) {
        kernel<<<grid, Traits::kThreads, Traits::kSharedBytes, stream>>>(kp);
        e = cudaGetLastError();
        what = "launch";
    }
    if (counter != nullptr) {
        const cudaError_t freed = cudaFreeAsync(counter, stream);
        if (e == cudaSuccess) e = freed, what = "cudaFreeAsync of the tile counter";
    }
    return cuda_status(e, what);
}

}  // namespace ccattn::sm90
