// The Hopper forward's entry points: what it supports, and the runtime -> compile-time dispatch
// onto the instantiations (dtype x head dims) under src/sm90/instantiations/.
#include <cstdint>
#include <string>

#include <cutlass/numeric_types.h>

#include "sm90/kernel_traits.h"
#include "sm90/launch.h"
#include "sm90/paged_kv.h"
#include "sm90/sm90.h"
#include "sm90/tile_sizes.h"

namespace ccattn::sm90 {
namespace {

// 16-byte vectors (TMA boxes, cp.async, output stores) need 16-byte aligned data and every stride
// that moves a pointer in whole 16-byte units; TMA also needs byte strides below 2^40. The stride of
// a dimension of extent 1 never moves a pointer (launch_forward replaces it in the tensor maps).
bool layout_ok(const core::AttnParams& p, const void* data, const core::Strides& s, bool keys) {
    const std::int64_t rows = keys ? (p.varlen() ? p.total_k : p.seqlen_k) : (p.varlen() ? p.total_q : p.seqlen_q);
    const std::int64_t extents[3] = {p.varlen() ? 1 : p.batch, rows, keys ? p.heads_kv : p.heads_q};
    const std::int64_t strides[3] = {s.batch, s.row, s.head};
    if (reinterpret_cast<std::uintptr_t>(data) % 16 != 0) return false;
    for (int d = 0; d < 3; ++d)
        if (extents[d] > 1 && (strides[d] % 8 != 0 || strides[d] >= (std::int64_t(1) << 39))) return false;
    return true;
}

}  // namespace

Status unsupported_reason(const core::AttnParams& p) {
    if (p.device != Device::cuda) return Status::unsupported("q", "the sm90 kernels need device tensors");
    if (p.dtype != DType::bf16 && p.dtype != DType::fp16) return Status::unsupported("q", "dtype must be bf16 or fp16");
    const TileSize tile = tile_size(p.dim_qk, p.dim_v);
    if (tile.block_m == 0)
        return Status::unsupported("q", "no sm90 kernel for head dims " + std::to_string(p.dim_qk) + "/" +
                                            std::to_string(p.dim_v) + " (have 64/64, 128/128, 192/128, 256/256)");
    switch (p.mask_kind) {
        case MaskKind::band:
        case MaskKind::band_tensors:
        case MaskKind::mask_mod: break;
        case MaskKind::block_sparse:
            if (p.sparse_tile_m != tile.block_m || p.sparse_tile_n != tile.block_n)
                return Status::unsupported("mask.block_sparse.tile_m",
                                           "the sm90 kernel for these head dims uses " + std::to_string(tile.block_m) +
                                               " x " + std::to_string(tile.block_n) + " tiles");
            break;
        case MaskKind::custom_band: return Status::unsupported("mask.custom_band", "host callables run on the CPU only");
    }
    // The softmax takes row maxima of the raw scores and masks with -inf: it needs scale > 0.
    if (!(p.scale_log2 > 0.f)) return Status::unsupported("scale", "the sm90 kernel needs a positive scale");
    const char* kAlign = "the sm90 kernel needs 16-byte aligned data and strides in multiples of 8 elements";
    if (!layout_ok(p, p.q, p.q_strides, false)) return Status::unsupported("q", kAlign);
    if (!layout_ok(p, p.k, p.k_strides, true)) return Status::unsupported("k", kAlign);
    if (!layout_ok(p, p.v, p.v_strides, true)) return Status::unsupported("v", kAlign);
    if (!layout_ok(p, p.out, p.out_strides, false)) return Status::unsupported("out", kAlign);
    if (p.cache.page_table != nullptr &&
        (!page_map_ok(p, p.k, p.k_strides, p.dim_qk) || !page_map_ok(p, p.v, p.v_strides, p.dim_v)))
        return Status::unsupported("k_cache", "the sm90 kernel needs pages of 16-row multiples, 16-byte strides");
    // TMA coordinates are 32-bit: every key row, plus one tile of overhang, must have one.
    constexpr std::int64_t kMaxRows = (std::int64_t(1) << 31) - 1024;
    if (p.total_k > kMaxRows || p.seqlen_k > kMaxRows)
        return Status::unsupported("k", "the sm90 kernel needs fewer than 2^31 - 1024 key rows");
    if (p.total_q > kMaxRows || p.seqlen_q * p.group > kMaxRows)
        return Status::unsupported("q", "the sm90 kernel needs fewer than 2^31 - 1024 (packed) query rows");
    return Status::success();
}

bool supports(const core::AttnParams& p) { return unsupported_reason(p).ok(); }

bool forward_tile_for(int dim_qk, int dim_v, std::int64_t& tile_m, std::int64_t& tile_n) {
    const TileSize t = tile_size(dim_qk, dim_v);
    tile_m = t.block_m;
    tile_n = t.block_n;
    return t.block_m > 0;
}

namespace {

template <class Element>
Status launch_for_dims(const core::AttnParams& p, const decode::SplitWork* split) {
    switch (p.dim_qk * 1000 + p.dim_v) {
        case 64064: return launch_forward<KernelTraits<Element, 64, 64>>(p, split);
        case 128128: return launch_forward<KernelTraits<Element, 128, 128>>(p, split);
        case 192128: return launch_forward<KernelTraits<Element, 192, 128>>(p, split);
        case 256256: return launch_forward<KernelTraits<Element, 256, 256>>(p, split);
    }
    return {Code::internal, "q", "sm90 tile table and dispatch disagree"};
}

Status launch(const core::AttnParams& p, const decode::SplitWork* split) {
    Status s = unsupported_reason(p);
    if (!s.ok()) return s;
    return p.dtype == DType::bf16 ? launch_for_dims<cutlass::bfloat16_t>(p, split) : launch_for_dims<cutlass::half_t>(p, split);
}

}  // namespace

Status forward(const core::AttnParams& p) { return launch(p, nullptr); }

Status forward_split(const core::AttnParams& p, const decode::SplitWork& w) { return launch(p, &w); }

}  // namespace ccattn::sm90
