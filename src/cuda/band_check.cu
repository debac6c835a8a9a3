// The device pass over band tensors: every (sequence, row) pair compares its clamped edges with the
// row before (core::edge_error, as the host check does); the first offending pair wins an atomicMin
// on its key, one thread describes it (core::describe_edge_error). For the backward, one thread per
// (sequence, kv tile) counts its q-tiles (core::q_tile_range). One copy brings the result back.
#include "cuda/band_check.h"

#include <climits>
#include <cstdint>

#include <cuda_runtime.h>

#include "api/validate.h"
#include "core/band_source.h"
#include "core/band_tensors.h"
#include "core/schedule.h"
#include "cuda/cuda_status.h"
#include "cuda/memory_pool.h"

namespace ccattn::cuda {
namespace {

struct BandCheckResult {
    unsigned long long first;   // key of the first offending (b, i, edge); ULLONG_MAX: none
    unsigned long long visits;  // the backward's q-tile visits (with a tile)
    core::BandEdgeError error;
};

// (sequence, row, edge) in key order: sequence, then row, then lo before hi. Rows stay below 2^31
// and sequences below 2^31 (checked by the backend and the validation).
__device__ unsigned long long key_of(int b, std::int64_t i, core::EdgeError e) {
    return (static_cast<unsigned long long>(b) << 33) | (static_cast<unsigned long long>(i) << 1) |
           (e == core::EdgeError::hi ? 1ull : 0ull);
}

__global__ void band_check_kernel(const __grid_constant__ core::AttnParams p, BandCheckResult* result) {
    const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
    for (int b = blockIdx.y; b < p.batch; b += gridDim.y) {
        const core::Sequence seq = core::sequence(p, b);
        const core::TensorBand band = core::tensor_band(p, b, seq);
        for (std::int64_t i = 1 + blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < seq.seqlen_q; i += stride) {
            const core::EdgeError e = core::edge_error(band, i);
            if (e != core::EdgeError::none) atomicMin(&result->first, key_of(b, i, e));
        }
    }
}

// Thread n of row b: kv tile n of sequence b (the grid covers the longest sequence's tiles).
__global__ void band_visits_kernel(const __grid_constant__ core::AttnParams p, sm80::KernelTiles tile,
                                   BandCheckResult* result) {
    const std::int64_t n = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
    for (int b = blockIdx.y; b < p.batch; b += gridDim.y) {
        const core::Sequence seq = core::sequence(p, b);
        if (n >= core::num_tiles(seq.seqlen_k, tile.kv_tile)) continue;
        const core::SequenceBand band = core::sequence_band(p, b, seq);
        const std::int64_t count =
            core::q_tile_range(band, n * tile.kv_tile, tile.kv_tile, seq.seqlen_q, tile.q_tile, p.group).count();
        if (count > 0) atomicAdd(&result->visits, static_cast<unsigned long long>(count));
    }
}

__global__ void band_check_describe_kernel(const __grid_constant__ core::AttnParams p, BandCheckResult* result) {
    const unsigned long long k = result->first;
    if (k == ULLONG_MAX) return;
    const int b = int(k >> 33);
    const std::int64_t i = std::int64_t((k >> 1) & 0xffffffffull);
    const core::TensorBand band = core::tensor_band(p, b, core::sequence(p, b));
    result->error = core::describe_edge_error(band, b, i, (k & 1) ? core::EdgeError::hi : core::EdgeError::lo);
}

}  // namespace

Status check_band_rows(const core::AttnParams& p, const sm80::KernelTiles* tile, std::int64_t& visits) {
    visits = 0;
    if (p.batch == 0 || p.seqlen_q == 0) return Status::success();  // seqlen_q: the longest sequence
    auto stream = static_cast<cudaStream_t>(p.stream);
    // The synchronization below would otherwise unmap the result's pool memory on every call.
    if (Status s = retain_pool_memory(); !s.ok()) return s;
    BandCheckResult* d_result = nullptr;
    cudaError_t err = cudaMallocAsync(reinterpret_cast<void**>(&d_result), sizeof(BandCheckResult), stream);
    if (err != cudaSuccess) return cuda_status(err, "band tensor check");
    BandCheckResult h_result{};
    constexpr int kBlock = 256;
    const unsigned batch_blocks = unsigned(p.batch < 65535 ? p.batch : 65535);
    const std::int64_t blocks = core::ceil_div(p.seqlen_q, kBlock);
    const dim3 grid(unsigned(blocks < 1024 ? blocks : 1024), batch_blocks);
    err = cudaMemsetAsync(d_result, 0, sizeof(BandCheckResult), stream);
    if (err == cudaSuccess) err = cudaMemsetAsync(&d_result->first, 0xff, sizeof(unsigned long long), stream);
    if (err == cudaSuccess) {
        band_check_kernel<<<grid, kBlock, 0, stream>>>(p, d_result);
        band_check_describe_kernel<<<1, 1, 0, stream>>>(p, d_result);
        if (tile != nullptr && p.seqlen_k > 0) {
            const std::int64_t kv_tiles = core::num_tiles(p.seqlen_k, tile->kv_tile);  // < 2^31 / 64
            band_visits_kernel<<<dim3(unsigned(core::ceil_div(kv_tiles, kBlock)), batch_blocks), kBlock, 0, stream>>>(
                p, *tile, d_result);
        }
        err = cudaGetLastError();
    }
    if (err == cudaSuccess) err = cudaMemcpyAsync(&h_result, d_result, sizeof(h_result), cudaMemcpyDeviceToHost, stream);
    if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
    const cudaError_t freed = cudaFreeAsync(d_result, stream);
    const Status s = cuda_status(err != cudaSuccess ? err : freed, "band tensor check");
    if (!s.ok()) return s;
    if (h_result.first != ULLONG_MAX) return api::band_edge_error(h_result.error);
    visits = std::int64_t(h_result.visits);
    return Status::success();
}

}  // namespace ccattn::cuda
