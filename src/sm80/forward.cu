// sm80::forward: the one runtime -> compile-time dispatch of the forward (head dims, then dtype). The
// kernels themselves are instantiated one per file in instantiations/forward_<Dqk>_<Dv>_<dtype>.cu.
#include <string>

#include "sm80/forward_launch.h"
#include "sm80/forward_tiles.h"
#include "sm80/sm80.h"

namespace ccattn::sm80 {
namespace {

template <int kDqk, int kDv>
Status run_for_dtype(const core::AttnParams& p) {
    return p.dtype == DType::bf16 ? run_forward<kDqk, kDv, DType::bf16>(p) : run_forward<kDqk, kDv, DType::fp16>(p);
}

// Block-sparse lists name the kernel's own tiles (unpacked: tile_m query positions of one head).
Status check_block_sparse_tiles(const core::AttnParams& p, const ForwardTile& t) {
    const std::string why = " for head dims " + std::to_string(p.dim_qk) + "/" + std::to_string(p.dim_v) +
                            " on this GPU (see ccattn::cuda_block_sparse_tiles)";
    if (p.sparse_tile_m != t.tile_m)
        return Status::invalid("mask.block_sparse.tile_m", "must be " + std::to_string(t.tile_m) + why);
    if (p.sparse_tile_n != t.tile_n)
        return Status::invalid("mask.block_sparse.tile_n", "must be " + std::to_string(t.tile_n) + why);
    return Status::success();
}

}  // namespace

// p is validated and supported (src/cuda/backend.cu checked dtype, head dims, alignment and sizes).
Status forward(const core::AttnParams& p) {
    ForwardTile tile;
    if (!forward_tile_for(p.dim_qk, p.dim_v, tile))
        return Status::unsupported("q", "head dims " + std::to_string(p.dim_qk) + "/" + std::to_string(p.dim_v));
    if (p.mask_kind == MaskKind::block_sparse) {
        Status s = check_block_sparse_tiles(p, tile);
        if (!s.ok()) return s;
    }
    switch (p.dim_qk) {
        case 64: return run_for_dtype<64, 64>(p);
        case 128: return run_for_dtype<128, 128>(p);
        case 192: return run_for_dtype<192, 128>(p);
        default: return run_for_dtype<256, 256>(p);
    }
}

}  // namespace ccattn::sm80
