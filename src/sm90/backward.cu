// The Hopper backward's entry points: what it supports, and the runtime -> compile-time dispatch
// onto the instantiations (dtype x head dims) under src/sm90/instantiations/. The host work around
// the main kernel is the shared driver sm80::backward_with, with this kernel's tiles.
#include <cstdint>
#include <string>

#include <cutlass/numeric_types.h>

#include "sm80/sm80.h"
#include "sm90/backward_launch.h"
#include "sm90/backward_traits.h"
#include "sm90/sm90.h"

namespace ccattn::sm90 {
namespace {

template <int kDqk, int kDv>
cudaError_t main_for_dtype(const sm80::BackwardParams& bp, cudaStream_t stream) {
    return bp.p.dtype == DType::bf16 ? launch_backward<BackwardTraits<cutlass::bfloat16_t, kDqk, kDv>>(bp, stream)
                                     : launch_backward<BackwardTraits<cutlass::half_t, kDqk, kDv>>(bp, stream);
}

// The instantiation for these head dims as the host driver runs it (tiles and turn groups do not
// depend on the dtype).
template <int kDqk, int kDv>
sm80::BackwardKernel kernel_of() {
    using Traits = BackwardTraits<cutlass::bfloat16_t, kDqk, kDv>;
    return {&main_for_dtype<kDqk, kDv>, {Traits::kBlockM, Traits::kBlockN}, Traits::kAddGroups};
}

// has_backward_tile(dim_qk, dim_v) holds.
sm80::BackwardKernel kernel_for(int dim_qk) {
    switch (dim_qk) {
        case 64: return kernel_of<64, 64>();
        case 128: return kernel_of<128, 128>();
        case 192: return kernel_of<192, 128>();
        default: return kernel_of<256, 256>();
    }
}

}  // namespace

bool supports_backward(const core::AttnParams& p) {
    // The transposed band limits multiply keys by cf and window (below 2^62 with both below 2^31);
    // the grid has a KV head and a batch dimension of at most 65535.
    constexpr std::int64_t k31 = std::int64_t(1) << 31;
    return p.device == Device::cuda && (p.dtype == DType::bf16 || p.dtype == DType::fp16) &&
           has_backward_tile(p.dim_qk, p.dim_v) && p.band.compress_factor < k31 && p.band.window_left < k31 &&
           p.heads_kv <= 65535 && p.batch <= 65535;
}

Status backward(const core::AttnParams& p) {
    if (!supports_backward(p)) return Status::unsupported("q", "the sm90 backward does not run this call");
    return sm80::backward_with(p, kernel_for(p.dim_qk));
}

sm80::KernelTiles backward_tiles(int dim_qk, int dim_v) {
    return has_backward_tile(dim_qk, dim_v) ? kernel_for(dim_qk).tiles : sm80::KernelTiles{};
}

}  // namespace ccattn::sm90
