// The split-KV decode driver: append, split kernel, combine, on p.stream with no host synchronization
// (the workspace comes from cudaMallocAsync / cudaFreeAsync, which CUDA graphs capture as memory nodes).
// Two split kernels: on Hopper the sm90 forward in its split mode (TMA, wgmma: the copy rate of the
// unsplit forward on wide grids), elsewhere the portable one of split_kernel.h, whose runtime ->
// compile-time dispatch (head dims, then dtype) is here; it is instantiated in
// instantiations/split_<Dqk>_<Dv>.cu.
#include <cuda_runtime.h>
#include <cutlass/numeric_types.h>

#include <cstdint>
#include <string>

#include "core/schedule.h"
#include "cuda/cuda_status.h"
#include "cuda/memory_pool.h"
#include "decode/append_kernel.h"
#include "decode/combine_kernel.h"
#include "decode/decode.h"
#include "decode/split_work.h"
#include "decode/splits.h"
#include "decode/tiles.h"
#include "sm90/sm90.h"

namespace ccattn::decode {
namespace {

constexpr std::int64_t kMaxPackedRows = 64;  // beyond, the forward's wide q-tiles use tensor cores better

struct DeviceLimits {
    int sms = 1, smem_per_sm = 0;
    std::int64_t l2_bytes = 0;
};

Status device_limits(DeviceLimits& d) {
    int device = 0, l2 = 0;
    Status s = cuda::cuda_status(cudaGetDevice(&device), "cudaGetDevice");
    if (s.ok()) s = cuda::cuda_status(cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
    if (s.ok())
        s = cuda::cuda_status(cudaDeviceGetAttribute(&d.smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device),
                              "cudaDeviceGetAttribute");
    if (s.ok()) s = cuda::cuda_status(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device), "cudaDeviceGetAttribute");
    d.l2_bytes = l2;
    return s;
}

// Block-sparse lists are per query head: those calls run unpacked, one head slot per query head.
bool unpacked(const core::AttnParams& p) { return p.mask_kind == MaskKind::block_sparse; }
std::int64_t packed_rows(const core::AttnParams& p) { return p.seqlen_q * (unpacked(p) ? 1 : p.group); }
std::int64_t m_tiles_of(const core::AttnParams& p) { return core::num_tiles(packed_rows(p), kTileM); }
// Work tiles of one split: one per (q-tile of tile_m packed rows, head slot, sequence).
std::int64_t ctas_per_split(const core::AttnParams& p, std::int64_t tile_m = kTileM) {
    return core::num_tiles(packed_rows(p), tile_m) * (unpacked(p) ? p.heads_q : p.heads_kv) * p.batch;
}

// The split kernel walks block-sparse lists in its own tiles: 16-row q-tiles inside a list's q-tile,
// list kv tiles cut into whole key tiles.
Status check_sparse_tiles(const core::AttnParams& p, const DecodeTile& tile) {
    if (!unpacked(p)) return Status::success();
    if (p.sparse_tile_m % kTileM != 0)
        return Status::unsupported("mask.block_sparse.tile_m", "split-KV needs a multiple of " + std::to_string(kTileM));
    if (p.sparse_tile_n % tile.tile_n != 0)
        return Status::unsupported("mask.block_sparse.tile_n",
                                   "split-KV needs a multiple of " + std::to_string(tile.tile_n) + " at head dims " +
                                       std::to_string(p.dim_qk) + "/" + std::to_string(p.dim_v));
    return Status::success();
}

// The heuristic's split count for a grid of `ctas` work tiles per split over kv tiles of tile_n keys,
// ctas_per_sm resident per SM.
int heuristic_splits_for(const core::AttnParams& p, const DeviceLimits& d, std::int64_t ctas, std::int64_t tile_n,
                         int ctas_per_sm) {
    SplitProblem w;
    w.ctas = ctas;
    w.kv_tiles = core::num_tiles(p.seqlen_k, tile_n);
    w.rows = std::int64_t(p.heads_q) * p.total_q;
    w.dim_v = p.dim_v;
    w.sms = d.sms;
    w.ctas_per_sm = ctas_per_sm;
    w.l2_bytes = d.l2_bytes;
    return choose_splits(w);
}

// The sm90 forward: a persistent grid of one CTA per SM over its work tiles.
int heuristic_splits_sm90(const core::AttnParams& p, const DeviceLimits& d) {
    std::int64_t tile_m = 0, tile_n = 0;
    if (!sm90::forward_tile_for(p.dim_qk, p.dim_v, tile_m, tile_n)) return 1;
    return heuristic_splits_for(p, d, ctas_per_split(p, tile_m), tile_n, 1);
}

// The portable split kernel (head dims supported): as many CTAs per SM as shared memory holds.
int heuristic_splits(const core::AttnParams& p, const DecodeTile& tile, const DeviceLimits& d) {
    // 1 KB of every SM's shared memory is reserved per resident CTA.
    const int per_cta = smem_bytes(tile, p.dim_qk, p.dim_v) + 1024;
    return heuristic_splits_for(p, d, ctas_per_split(p), tile.tile_n, d.smem_per_sm / per_cta > 0 ? d.smem_per_sm / per_cta : 1);
}

template <DType kDType>
Status launch_split(const core::AttnParams& p, const SplitWork& w) {
    switch (p.dim_qk) {
        case 64: return run_split<64, 64, kDType>(p, w);
        case 128: return run_split<128, 128, kDType>(p, w);
        case 192: return run_split<192, 128, kDType>(p, w);
        default: return run_split<256, 256, kDType>(p, w);
    }
}

template <class Element>
Status launch_combine(const core::AttnParams& p, const SplitWork& w) {
    const dim3 grid(unsigned(core::num_tiles(p.seqlen_q, kCombineRows)), unsigned(p.heads_q), unsigned(p.batch));
    combine_kernel<Element><<<grid, 32 * kCombineRows, 0, static_cast<cudaStream_t>(p.stream)>>>(p, w);
    return cuda::cuda_status(cudaGetLastError(), "split-KV combine launch");
}

Status split_and_combine(const core::AttnParams& p, const SplitWork& w, bool hopper) {
    const bool bf16 = p.dtype == DType::bf16;
    Status s = hopper ? sm90::forward_split(p, w) : bf16 ? launch_split<DType::bf16>(p, w) : launch_split<DType::fp16>(p, w);
    if (!s.ok()) return s;
    return bf16 ? launch_combine<cutlass::bfloat16_t>(p, w) : launch_combine<cutlass::half_t>(p, w);
}

}  // namespace

bool preferred(const core::AttnParams& p, bool hopper) {
    if (p.num_splits != 0) return p.num_splits > 1;
    if (hopper) {
        DeviceLimits d;
        return device_limits(d).ok() && heuristic_splits_sm90(p, d) > 1;
    }
    DecodeTile tile;
    DeviceLimits d;
    if (packed_rows(p) > kMaxPackedRows || !decode_tile_for(p.dim_qk, p.dim_v, tile) ||
        !check_sparse_tiles(p, tile).ok() || !device_limits(d).ok())
        return false;
    // Measured on the H200 in two runs (bench/NOTES.md v6): the unsplit kernels win while the grid of
    // one split (a CTA per q-tile, KV head and sequence) covers a quarter of the SMs (B8 x 8 KV heads:
    // 212 against 410 us; B32 x 4: 78 against 237 us); below that the split kernel does (B1 x 4: 167
    // against 800 us).
    if (ctas_per_split(p) >= d.sms / 4) return false;
    return heuristic_splits(p, tile, d) > 1;
}

Status forward(const core::AttnParams& p, bool hopper) {
    DecodeTile tile;
    if (!decode_tile_for(p.dim_qk, p.dim_v, tile))
        return Status::unsupported("q", "head dims " + std::to_string(p.dim_qk) + "/" + std::to_string(p.dim_v));
    Status s = hopper ? Status::success() : check_sparse_tiles(p, tile);
    if (!s.ok()) return s;
    if (p.batch > 65535) return Status::unsupported("q", "batch larger than 65535");
    if (p.heads_q > 65535) return Status::unsupported("q", "more than 65535 heads");
    const auto stream = static_cast<cudaStream_t>(p.stream);
    if (p.cache.new_rows > 0 && p.batch > 0) {
        append_kernel<<<dim3(unsigned(p.cache.new_rows), unsigned(p.heads_kv), unsigned(p.batch)), 32, 0, stream>>>(p);
        if (!(s = cuda::cuda_status(cudaGetLastError(), "kv-cache append launch")).ok()) return s;
    }
    if (p.batch == 0 || p.seqlen_q == 0) return s;

    SplitWork w;
    w.m_tiles = int(m_tiles_of(p));
    if (p.num_splits > 0) {
        w.splits = p.num_splits;
    } else {
        DeviceLimits d;
        if (!(s = device_limits(d)).ok()) return s;
        w.splits = hopper ? heuristic_splits_sm90(p, d) : heuristic_splits(p, tile, d);
    }
    if (hopper && w.splits == 1) return sm90::forward(p);  // no partial results to combine
    if (m_tiles_of(p) * w.splits > (std::int64_t(1) << 31) - 1)
        return Status::unsupported("q", "too many query rows for one split-KV launch");
    const std::int64_t rows = std::int64_t(p.heads_q) * p.total_q * w.splits;
    if (!(s = cuda::retain_pool_memory()).ok()) return s;
    void* workspace = nullptr;
    if (!(s = cuda::cuda_status(cudaMallocAsync(&workspace, std::size_t(rows * (p.dim_v + 1)) * sizeof(float), stream),
                                "cudaMallocAsync of the split-KV workspace"))
             .ok())
        return s;
    w.o_partial = static_cast<float*>(workspace);
    w.lse_partial = w.o_partial + rows * p.dim_v;
    s = split_and_combine(p, w, hopper);
    const Status freed = cuda::cuda_status(cudaFreeAsync(workspace, stream), "cudaFreeAsync of the split-KV workspace");
    return s.ok() ? freed : s;
}

}  // namespace ccattn::decode
