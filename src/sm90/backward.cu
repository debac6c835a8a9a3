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

// supports_backward(p) checked the head dims.
cudaError_t backward_main(const sm80::BackwardParams& bp, cudaStream_t stream) {
    switch (bp.p.dim_qk) {
        case 64: return main_for_dtype<64, 64>(bp, stream);
        case 128: return main_for_dtype<128, 128>(bp, stream);
        default: return main_for_dtype<192, 128>(bp, stream);
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
    // The two consumer warp groups add disjoint halves (dQ columns, dK / dV keys), each in its own turn;
    // where dQ goes by 64-column blocks (Dqk 192: BackwardTraits::kDqByBlocks) each block takes its own.
    const int add_groups = p.dim_qk > 128 ? p.dim_qk / 64 : 2;
    return sm80::backward_with(p, {&backward_main, backward_tiles(p.dim_qk, p.dim_v), add_groups});
}

sm80::KernelTiles backward_tiles(int, int) { return {kBackwardBlockM, kBackwardBlockN}; }  // alike for every pair

}  // namespace ccattn::sm90
