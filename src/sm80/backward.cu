// sm80::backward: checks what the kernels need beyond validation and the backend's checks (block-sparse
// tile sizes, shared memory), cuts the q range into chunks when the kv-tiles alone cannot fill the GPU,
// allocates the fp32 workspaces on the stream (cudaMallocAsync, freed with cudaFreeAsync when the call
// returns) and runs preprocess -> block-sparse bit lists -> main kernel -> conversions of the fp32
// accumulators (dQ's only for q-tiles of several visitors: DirectDq); in deterministic mode the main
// kernel adds in a fixed order, through turn counters (AddOrder). The runtime -> compile-time dispatch (head dims, then dtype) of sm80's main kernel is
// sm80_main; the Hopper kernel brings its own (src/sm90/backward.cu).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include <cuda_runtime.h>
#include <cutlass/numeric_types.h>

#include "core/schedule.h"
#include "cuda/band_key_rows.h"
#include "cuda/cuda_status.h"
#include "cuda/memory_pool.h"
#include "sm80/backward_chunks.h"
#include "sm80/backward_params.h"
#include "sm80/backward_preprocess.h"
#include "sm80/backward_sparse.h"
#include "sm80/backward_tiles.h"
#include "sm80/sm80.h"

namespace ccattn::sm80 {
namespace {

template <int kDqk, int kDv>
cudaError_t launch_for_dtype(const BackwardParams& bp, cudaStream_t stream) {
    return bp.p.dtype == DType::bf16 ? launch_backward<kDqk, kDv, DType::bf16>(bp, stream)
                                     : launch_backward<kDqk, kDv, DType::fp16>(bp, stream);
}

// Head dims were checked against the tile table before.
cudaError_t sm80_main(const BackwardParams& bp, cudaStream_t stream) {
    switch (bp.p.dim_qk) {
        case 64: return launch_for_dtype<64, 64>(bp, stream);
        case 128: return launch_for_dtype<128, 128>(bp, stream);
        case 192: return launch_for_dtype<192, 128>(bp, stream);
        default: return launch_for_dtype<256, 256>(bp, stream);
    }
}

// Stream-ordered device allocations of one call, released (also stream-ordered) when it ends.
class Workspace {
  public:
    explicit Workspace(cudaStream_t stream) : stream_(stream) {}
    Workspace(const Workspace&) = delete;
    Workspace& operator=(const Workspace&) = delete;
    ~Workspace() {
        for (int i = 0; i < count_; ++i) cudaFreeAsync(ptrs_[i], stream_);
    }
    template <class T>
    cudaError_t alloc(T*& ptr, std::int64_t elements) {
        ptr = nullptr;
        if (elements <= 0) return cudaSuccess;
        cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&ptr), std::size_t(elements) * sizeof(T), stream_);
        if (e == cudaSuccess) ptrs_[count_++] = ptr;
        return e;
    }

  private:
    cudaStream_t stream_;
    void* ptrs_[10] = {};
    int count_ = 0;
};

unsigned blocks_for(std::int64_t threads, int block) {
    const std::int64_t blocks = core::ceil_div(threads, block);
    return unsigned(blocks < (1 << 20) ? blocks : (1 << 20));  // grid-stride loops cover the rest
}

// Converts one fp32 accumulator into its output tensor, but the rows direct_dq_row names for `skip`.
cudaError_t convert(const AccumToOutput& a, const BackwardParams& skip, bool bf16, cudaStream_t stream) {
    const std::int64_t pairs = a.rows * a.heads;
    if (pairs == 0) return cudaSuccess;
    constexpr int kBlock = 256;
    const unsigned grid = blocks_for(pairs * (a.dim / 8), kBlock);
    if (bf16) backward_convert_kernel<cutlass::bfloat16_t><<<grid, kBlock, 0, stream>>>(a, skip);
    else backward_convert_kernel<cutlass::half_t><<<grid, kBlock, 0, stream>>>(a, skip);
    return cudaGetLastError();
}

// CCATTN_DIRECT_DQ=0 in the environment sends every q-tile's dQ through the fp32 accumulator, as before
// DirectDq existed (to compare the two in one build).
bool direct_dq_allowed() {
    static const bool allowed = [] {
        const char* e = std::getenv("CCATTN_DIRECT_DQ");
        return e == nullptr || std::strcmp(e, "0") != 0;
    }();
    return allowed;
}

}  // namespace

Status backward(const core::AttnParams& p) {
    BackwardTile tile;
    if (!backward_tile_for(p.dim_qk, p.dim_v, tile))  // the backend dispatch checked head dims already
        return Status::unsupported("q", "no sm80 backward for head dims " + std::to_string(p.dim_qk) + "/" +
                                            std::to_string(p.dim_v));
    int device = 0, smem_limit = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&smem_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (err != cudaSuccess) return cuda::cuda_status(err, "device query");
    const int smem = backward_smem_bytes(tile, p.dim_qk, p.dim_v);
    if (smem > smem_limit)
        return Status::unsupported("q", "the CUDA backward for head dim " + std::to_string(p.dim_qk) + " needs " +
                                            std::to_string(smem) + " bytes of shared memory per block; this GPU has " +
                                            std::to_string(smem_limit));
    return backward_with(p, {&sm80_main, tile.kernel_tiles(), 1});
}

Status backward_with(const core::AttnParams& p, const BackwardKernel& kernel) {
    const KernelTiles tile = kernel.tiles;
    BackwardParams bp;
    bp.p = p;
    const bool sparse = p.mask_kind == MaskKind::block_sparse;
    // A q-tile's adders are consecutive kv tiles only for the built-in band and mask_mod; ranking the kv
    // tiles that block-sparse lists name for a q-tile would need a pass over the lists on the device,
    // and band tensors may leave kv tiles that no row sees between a q-tile's visitors.
    if ((sparse || p.mask_kind == MaskKind::band_tensors) && p.deterministic)
        return Status::unsupported("deterministic", "the CUDA backward has no deterministic mode for block-sparse "
                                                    "masks or band tensors (the native band and mask_mod have one)");
    if (sparse) {
        // A q-tile of the lists must split into whole kernel q-tiles; a kernel kv-tile may overlap up to
        // 32 kv-tiles of the lists (a bit mask of them per q-tile), which any tile_n >= kv_tile / 30
        // guarantees, e.g. the forward's 64-key tiles against the backward's 128.
        const std::int64_t tm = p.sparse_tile_m, tn = p.sparse_tile_n;
        if (tm % tile.q_tile != 0)
            return Status::invalid("mask.block_sparse.tile_m", "must be a multiple of the CUDA backward's q-tile (" +
                                                                   std::to_string(tile.q_tile) + " for these head dims)");
        if (core::ceil_div(tile.kv_tile, tn) + 1 > 32)
            return Status::invalid("mask.block_sparse.tile_n", "must be at least " + std::to_string(tile.kv_tile / 30 + 1) +
                                                                   " (the CUDA backward's kv-tile, " +
                                                                   std::to_string(tile.kv_tile) + ", / 30)");
        if (p.seqlen_k > (std::int64_t(1) << 31) - tile.kv_tile)
            return Status::unsupported("k", "block-sparse masks on CUDA need fewer than 2^31 keys per sequence");
        bp.sparse.kv_tiles = core::num_tiles(p.seqlen_k, tn);
        bp.sparse.words = core::ceil_div(core::num_tiles(p.seqlen_q, tm), 64);
        bp.sparse.tile_n = tn;
        bp.sparse.q_subtiles = int(tm / tile.q_tile);
    }

    int device = 0, sms = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (err != cudaSuccess) return cuda::cuda_status(err, "device query");
    if (Status s = cuda::retain_pool_memory(device); !s.ok()) return s;

    bp.chunks = q_chunks(p, tile, bp.sparse, sms);
    // Measured (H100, bench/NOTES.md v17): +11% with every q-tile direct (127 keys a sequence), +5% with
    // half (255 keys), but -1.5 to -3% from 511 keys on, where few are direct and the classification
    // and the per-row look-ups of the preprocess and the conversion cost more than they save. The Hopper
    // kernel compiles the direct path for bands (built-in or tensors) without deterministic mode only.
    const bool band = p.mask_kind == MaskKind::band || p.mask_kind == MaskKind::band_tensors;
    bp.direct.on = band && !p.deterministic && direct_dq_allowed() &&
                   p.seqlen_k <= 2 * std::int64_t(tile.kv_tile);
    bp.direct.q_tile = tile.q_tile;
    bp.direct.kv_tile = tile.kv_tile;
    bp.direct.tiles_per_sequence = core::num_tiles(p.seqlen_q * p.group, tile.q_tile);
    const bool chunked = bp.chunks.count > 1;

    // Workspace: fp32 dQ accumulator and D, the block-sparse bit sets, the fp32 dK and dV accumulators
    // of a chunked q range, the direct q-tiles. Nothing is written to the outputs unless every
    // allocation succeeded.
    auto stream = static_cast<cudaStream_t>(p.stream);
    Workspace ws(stream);
    const std::int64_t pairs = p.total_q * p.heads_q;
    const std::int64_t key_pairs = chunked ? p.total_k * p.heads_kv : 0;
    const std::int64_t sparse_words = sparse ? std::int64_t(p.batch) * p.heads_q * bp.sparse.kv_tiles * bp.sparse.words : 0;
    // Deterministic mode: the turn counters of every (batch, KV head) q-tile and, with chunks, kv tile.
    AddOrder& order = bp.order;
    order.heads_kv = p.heads_kv;
    order.groups = kernel.add_groups;
    order.q_tiles = p.deterministic ? core::num_tiles(p.seqlen_q * p.group, tile.q_tile) : 0;
    order.kv_tiles = p.deterministic && chunked ? core::num_tiles(p.seqlen_k, tile.kv_tile) : 0;
    const std::int64_t per_head = std::int64_t(p.batch) * p.heads_kv * kernel.add_groups;
    const std::int64_t dq_turns = per_head * order.q_tiles, turns = dq_turns + per_head * order.kv_tiles;
    unsigned long long *visit = nullptr, *full = nullptr;
    int* turn = nullptr;
    std::uint8_t* direct_tiles = nullptr;
    const std::int64_t direct_count = bp.direct.on ? p.batch * bp.direct.tiles_per_sequence : 0;
    std::int32_t* key_rows = nullptr;
    const std::int64_t key_row_count = p.mask_kind == MaskKind::band_tensors ? 2 * p.total_k : 0;
    if ((err = ws.alloc(bp.dq_accum, pairs * p.dim_qk)) != cudaSuccess || (err = ws.alloc(bp.dsum, pairs)) != cudaSuccess ||
        (err = ws.alloc(visit, sparse_words)) != cudaSuccess || (err = ws.alloc(full, sparse_words)) != cudaSuccess ||
        (err = ws.alloc(bp.dk_accum, key_pairs * p.dim_qk)) != cudaSuccess ||
        (err = ws.alloc(bp.dv_accum, key_pairs * p.dim_v)) != cudaSuccess ||
        (err = ws.alloc(turn, turns)) != cudaSuccess || (err = ws.alloc(direct_tiles, direct_count)) != cudaSuccess ||
        (err = ws.alloc(key_rows, key_row_count)) != cudaSuccess)
        return cuda::cuda_status(err, "workspace allocation");
    bp.sparse.visit = visit;
    bp.sparse.full = full;
    order.dq = dq_turns > 0 ? turn : nullptr;
    order.dkv = turns > dq_turns ? turn + dq_turns : nullptr;
    if (key_pairs > 0 && ((err = cudaMemsetAsync(bp.dk_accum, 0, key_pairs * p.dim_qk * 4, stream)) != cudaSuccess ||
                          (err = cudaMemsetAsync(bp.dv_accum, 0, key_pairs * p.dim_v * 4, stream)) != cudaSuccess))
        return cuda::cuda_status(err, "workspace clear");
    if (turns > 0 && (err = cudaMemsetAsync(turn, 0, turns * sizeof(int), stream)) != cudaSuccess)
        return cuda::cuda_status(err, "workspace clear");

    const bool bf16 = p.dtype == DType::bf16;
    constexpr int kBlock = 256;
    if (sparse_words > 0) {
        if ((err = cudaMemsetAsync(visit, 0, sparse_words * 8, stream)) != cudaSuccess ||
            (err = cudaMemsetAsync(full, 0, sparse_words * 8, stream)) != cudaSuccess)
            return cuda::cuda_status(err, "workspace clear");
        const std::int64_t q_tiles = core::num_tiles(p.seqlen_q, p.sparse_tile_m);
        sparse_bits_kernel<<<blocks_for(std::int64_t(p.batch) * p.heads_q * q_tiles, kBlock), kBlock, 0, stream>>>(
            p.sparse_full, p.sparse_partial, p.batch, p.heads_q, q_tiles, bp.sparse.kv_tiles, bp.sparse.words, visit, full);
        if ((err = cudaGetLastError()) != cudaSuccess) return cuda::cuda_status(err, "block-sparse lists");
    }
    if (key_row_count > 0) {  // before the first kernel that schedules tiles
        if ((err = cuda::fill_band_key_rows(p, key_rows)) != cudaSuccess) return cuda::cuda_status(err, "band key rows");
        bp.p.band_rows.keys.rows = key_rows;
    }
    bp.direct.on = direct_count > 0;
    bp.direct.tiles = direct_tiles;
    if (direct_count > 0) {
        direct_tiles_kernel<<<blocks_for(direct_count, kBlock), kBlock, 0, stream>>>(bp, direct_tiles);
        if ((err = cudaGetLastError()) != cudaSuccess) return cuda::cuda_status(err, "direct dq tiles");
    }
    if (pairs > 0) {
        const int lanes = p.dim_v / 8;  // 8, 16 or 32: divides a warp
        const unsigned grid = blocks_for(pairs * lanes, kBlock);
        if (bf16) backward_preprocess_kernel<cutlass::bfloat16_t><<<grid, kBlock, 0, stream>>>(bp, lanes);
        else backward_preprocess_kernel<cutlass::half_t><<<grid, kBlock, 0, stream>>>(bp, lanes);
        if ((err = cudaGetLastError()) != cudaSuccess) return cuda::cuda_status(err, "preprocess");
    }
    if ((err = kernel.main(bp, stream)) != cudaSuccess) return cuda::cuda_status(err, "main kernel");
    const bool varlen = p.varlen();
    if ((err = convert({bp.dq_accum, p.dq, p.dq_strides, p.total_q, p.seqlen_q, p.heads_q, p.dim_qk, varlen, p.scale},
                       bp, bf16, stream)) != cudaSuccess)
        return cuda::cuda_status(err, "dq conversion");
    if (chunked &&
        ((err = convert({bp.dk_accum, p.dk, p.dk_strides, p.total_k, p.seqlen_k, p.heads_kv, p.dim_qk, varlen, 1.f},
                        BackwardParams{}, bf16, stream)) != cudaSuccess ||
         (err = convert({bp.dv_accum, p.dv, p.dv_strides, p.total_k, p.seqlen_k, p.heads_kv, p.dim_v, varlen, 1.f},
                        BackwardParams{}, bf16, stream)) != cudaSuccess))
        return cuda::cuda_status(err, "dk / dv conversion");
    return Status::success();
}

}  // namespace ccattn::sm80
