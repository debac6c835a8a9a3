// The CUDA backend's dispatch table: what every CUDA kernel needs beyond validation (dtype, head dims,
// 16-byte aligned rows, sizes), then the kernel family for the device's compute capability.
//   compute capability 9.0: the sm90 forward (wgmma, TMA) for what sm90::supports(p), the sm90
//                           backward for what sm90::supports_backward(p) (every mask mechanism,
//                           band tensors included), else sm80
//   compute capability >= 8.0: sm80 kernels (mma.sync)
//   below 8.0: unsupported
// Before both: the split-KV decode (src/decode) for forwards whose grid would leave SMs idle
// (decode::preferred), and for every kv-cache call; on Hopper it runs the sm90 forward's split mode.
// CCATTN_KERNELS=sm80 in the environment keeps Hopper on the sm80 kernels (to compare the two).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include <cuda_runtime.h>

#include "api/backends.h"
#include "ccattn/cuda_tiles.h"
#include "cuda/band_check.h"
#include "cuda/cuda_status.h"
#include "decode/decode.h"
#include "sm80/backward_tiles.h"
#include "sm80/forward_tiles.h"
#include "sm80/sm80.h"
#include "sm90/sm90.h"

namespace ccattn::cuda {
namespace {

// Kernels index keys and packed query rows with 32-bit integers; this leaves room for a tile.
constexpr std::int64_t kMaxRows = (std::int64_t(1) << 31) - (1 << 16);
// The per-element band predicate (mask_mod, block-sparse partial tiles) multiplies keys by cf.
constexpr std::int64_t kMaxElementBandFactor = std::int64_t(1) << 31;

const char* kHeadDimsHelp = "supported head dims (Dqk/Dv): 64/64, 128/128, 192/128, 256/256";

Status check_head_dims(const core::AttnParams& p, bool backward) {
    sm80::ForwardTile f;
    sm80::BackwardTile b;
    const bool ok = backward ? sm80::backward_tile_for(p.dim_qk, p.dim_v, b) : sm80::forward_tile_for(p.dim_qk, p.dim_v, f);
    if (ok) return Status::success();
    const bool qk_known = p.dim_qk == 64 || p.dim_qk == 128 || p.dim_qk == 192 || p.dim_qk == 256;
    return Status::unsupported(qk_known ? "v" : "q", "head dims " + std::to_string(p.dim_qk) + "/" +
                                                         std::to_string(p.dim_v) + " on CUDA; " + kHeadDimsHelp);
}

// Kernels move 16 bytes at a time: every row must start 16-byte aligned. The stride of a dimension of
// extent 1 never moves a pointer and is not constrained.
Status check_rows_aligned(const core::AttnParams& p, bool backward) {
    struct View {
        const char* name;
        const void* data;
        core::Strides s;
        bool keys;
    };
    const View views[] = {{"q", p.q, p.q_strides, false},          {"k", p.k, p.k_strides, true},
                          {"v", p.v, p.v_strides, true},           {"out", p.out, p.out_strides, false},
                          {"dout", p.dout, p.dout_strides, false}, {"dq", p.dq, p.dq_strides, false},
                          {"dk", p.dk, p.dk_strides, true},        {"dv", p.dv, p.dv_strides, true}};
    const int count = backward ? 8 : 4;
    for (int i = 0; i < count; ++i) {
        const View& v = views[i];
        const std::int64_t rows = v.keys ? (p.varlen() ? p.total_k : p.seqlen_k) : (p.varlen() ? p.total_q : p.seqlen_q);
        const int heads = v.keys ? p.heads_kv : p.heads_q;
        if (reinterpret_cast<std::uintptr_t>(v.data) % 16 != 0)
            return Status::invalid(v.name, "data pointer must be 16-byte aligned on CUDA");
        if ((!p.varlen() && p.batch > 1 && v.s.batch % 8 != 0) || (rows > 1 && v.s.row % 8 != 0) ||
            (heads > 1 && v.s.head % 8 != 0))
            return Status::invalid(v.name, "batch, row and head strides must be multiples of 8 elements on CUDA "
                                           "(16-byte aligned rows)");
    }
    return Status::success();
}

Status check_supported(const core::AttnParams& p, bool backward) {
    if (p.dtype != DType::bf16 && p.dtype != DType::fp16)
        return Status::unsupported("q", std::string("dtype ") + dtype_name(p.dtype) + " on CUDA; use bf16 or fp16");
    Status s = check_head_dims(p, backward);
    if (!s.ok()) return s;
    if (!(s = check_rows_aligned(p, backward)).ok()) return s;
    if (p.seqlen_k > kMaxRows) return Status::unsupported("k", "sequence length must be below 2^31 - 2^16 on CUDA");
    if (p.seqlen_q * p.group > kMaxRows)
        return Status::unsupported("q", "query length times query heads per KV head must be below 2^31 - 2^16 on CUDA");
    if (p.mask_kind == MaskKind::custom_band)
        return Status::unsupported("mask.custom_band", "host callables run on the CPU backend only");
    if (p.mask_kind == MaskKind::mask_mod || p.mask_kind == MaskKind::block_sparse) {
        if (p.band.compress_factor >= kMaxElementBandFactor)
            return Status::unsupported("mask.compress_factor", "must be below 2^31 for per-element masks on CUDA");
        if (p.band.window_left >= kMaxElementBandFactor)
            return Status::unsupported("mask.window_left", "must be below 2^31 for per-element masks on CUDA");
    }
    return Status::success();
}

// The current device's compute capability, major * 10 + minor.
Status compute_capability(int& cc) {
    int device = 0, major = 0, minor = 0;
    Status s = cuda_status(cudaGetDevice(&device), "cudaGetDevice");
    if (!s.ok()) return s;
    s = cuda_status(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute");
    if (!s.ok()) return s;
    s = cuda_status(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "cudaDeviceGetAttribute");
    cc = major * 10 + minor;
    return s;
}

Status below_sm80(int cc) {
    return Status::unsupported("backend", "the CUDA kernels need compute capability 8.0 or newer; this device has " +
                                              std::to_string(cc / 10) + "." + std::to_string(cc % 10));
}

// Whether the Hopper kernels may run on a device of compute capability cc.
bool use_sm90(int cc) {
    static const bool sm80_only = [] {
        const char* k = std::getenv("CCATTN_KERNELS");
        return k != nullptr && std::strcmp(k, "sm80") == 0;
    }();
    return cc == 90 && !sm80_only;
}

// The kernel family per compute capability: the Hopper kernel where it runs p, else sm80's.
template <class Sm90Supports, class Sm90Kernel, class Sm80Kernel>
Status dispatch(const core::AttnParams& p, bool backward, Sm90Supports&& sm90_supports, Sm90Kernel&& sm90_kernel,
                Sm80Kernel&& sm80_kernel) {
    Status s = check_supported(p, backward);
    if (!s.ok()) return s;
    int cc = 0;
    if (!(s = compute_capability(cc)).ok()) return s;
    if (cc < 80) return below_sm80(cc);
    const bool hopper = use_sm90(cc) && sm90_supports(p);
    if (!p.check_band_rows) return hopper ? sm90_kernel(p) : sm80_kernel(p);
    // Band tensors, checked on the device before anything is written; the same pass counts the
    // backward's q-tile visits, with the tiles of the kernel that runs, for its chunks.
    core::AttnParams checked = p;
    sm80::BackwardTile sm80_tile;
    const bool counts = backward && sm80::backward_tile_for(p.dim_qk, p.dim_v, sm80_tile);
    const sm80::KernelTiles tiles = hopper ? sm90::backward_tiles(p.dim_qk, p.dim_v) : sm80_tile.kernel_tiles();
    if (!(s = check_band_rows(p, counts ? &tiles : nullptr, checked.band_visits)).ok()) return s;
    return hopper ? sm90_kernel(checked) : sm80_kernel(checked);
}

}  // namespace

bool available() {
    static const bool any = [] {
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess) {
            cudaGetLastError();  // no driver / no device: not an error of a later call
            return false;
        }
        return n > 0;
    }();
    return any;
}

Status copy_to_host(const std::int32_t* device_ptr, std::int64_t count, std::int32_t* host_ptr) {
    if (count <= 0) return Status::success();
    return cuda_status(cudaMemcpy(host_ptr, device_ptr, std::size_t(count) * sizeof(std::int32_t), cudaMemcpyDeviceToHost),
                       "cudaMemcpy of cu_seqlens");
}

// Block-sparse lists name the tiles of the kernel the dispatch would run unsplit
// (cuda_block_sparse_tiles), also when split-KV runs them: the contract does not depend on the split.
Status check_split_sparse_tiles(const core::AttnParams& p) {
    if (p.mask_kind != MaskKind::block_sparse) return Status::success();
    std::int64_t tile_m = 0, tile_n = 0;
    Status s = cuda_block_sparse_tiles(p.dim_qk, p.dim_v, p.dtype, tile_m, tile_n);
    if (!s.ok()) return s;
    const std::string why = " for head dims " + std::to_string(p.dim_qk) + "/" + std::to_string(p.dim_v) +
                            " on this GPU (see ccattn::cuda_block_sparse_tiles)";
    if (p.sparse_tile_m != tile_m)
        return Status::invalid("mask.block_sparse.tile_m", "must be " + std::to_string(tile_m) + why);
    if (p.sparse_tile_n != tile_n)
        return Status::invalid("mask.block_sparse.tile_n", "must be " + std::to_string(tile_n) + why);
    return Status::success();
}

Status forward(const core::AttnParams& p) {
    auto hopper = [](const core::AttnParams& q) {
        return decode::preferred(q, true) ? decode::forward(q, true) : sm90::forward(q);
    };
    auto portable = [](const core::AttnParams& q) {
        if (!decode::preferred(q, false)) return sm80::forward(q);
        const Status s = check_split_sparse_tiles(q);
        return s.ok() ? decode::forward(q, false) : s;
    };
    return dispatch(p, false, sm90::supports, hopper, portable);
}

// The appended rows are 16-byte aligned like the cache's; everything else as a forward.
Status forward_kvcache(const core::AttnParams& p) {
    Status s = check_supported(p, false);
    if (!s.ok()) return s;
    const core::KvCache& c = p.cache;
    const char* names[2] = {"k_new", "v_new"};
    const void* rows[2] = {c.k_new, c.v_new};
    const core::Strides strides[2] = {c.k_new_strides, c.v_new_strides};
    for (int i = 0; i < 2 && c.new_rows > 0; ++i) {
        if (reinterpret_cast<std::uintptr_t>(rows[i]) % 16 != 0)
            return Status::invalid(names[i], "data pointer must be 16-byte aligned on CUDA");
        if ((p.batch > 1 && strides[i].batch % 8 != 0) || (c.new_rows > 1 && strides[i].row % 8 != 0) ||
            (p.heads_kv > 1 && strides[i].head % 8 != 0))
            return Status::invalid(names[i], "batch, row and head strides must be multiples of 8 elements on CUDA");
    }
    int cc = 0;
    if (!(s = compute_capability(cc)).ok()) return s;
    if (cc < 80) return below_sm80(cc);
    return decode::forward(p, use_sm90(cc) && sm90::supports(p));
}
Status backward(const core::AttnParams& p) {
    auto sm90_runs = [](const core::AttnParams& q) {
        return sm90::supports_backward(q);
    };
    return dispatch(p, true, sm90_runs, sm90::backward, sm80::backward);
}

}  // namespace ccattn::cuda

namespace ccattn {

Status cuda_block_sparse_tiles(int dim_qk, int dim_v, DType dtype, std::int64_t& tile_m, std::int64_t& tile_n) {
    if (!cuda::available()) return {Code::backend_unavailable, "backend", "no CUDA device"};
    if (dtype != DType::bf16 && dtype != DType::fp16)
        return Status::unsupported("dtype", std::string(dtype_name(dtype)) + " on CUDA; use bf16 or fp16");
    int cc = 0;
    Status s = cuda::compute_capability(cc);
    if (!s.ok()) return s;
    if (cc < 80) return cuda::below_sm80(cc);
    if (cuda::use_sm90(cc) && sm90::forward_tile_for(dim_qk, dim_v, tile_m, tile_n)) return Status::success();
    sm80::ForwardTile t;
    if (!sm80::forward_tile_for(dim_qk, dim_v, t))
        return Status::unsupported("dim_qk", "head dims " + std::to_string(dim_qk) + "/" + std::to_string(dim_v) +
                                                 " on CUDA; " + cuda::kHeadDimsHelp);
    tile_m = t.tile_m;
    tile_n = t.tile_n;
    return Status::success();
}

}  // namespace ccattn
