// Argument checking: turns the public ForwardArgs / BackwardArgs into core::AttnParams, or returns
// an error naming the first offending argument. Nothing is written on error.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>

#include "ccattn/attention.h"
#include "ccattn/kvcache.h"
#include "core/params.h"

namespace ccattn::api {

// Host copies of the cu_seqlens arrays when they live on a device (null for host tensors or
// fixed-length calls); validation reads lengths from them.
struct HostSeqlens {
    const std::int32_t* q = nullptr;
    const std::int32_t* k = nullptr;
};

// Split-KV CTAs per sequence a call may ask for (ForwardArgs / KvCacheArgs::num_splits).
constexpr int kMaxSplits = 256;

Status fill_forward_params(const ForwardArgs& args, const HostSeqlens& host, core::AttnParams& p);
Status fill_backward_params(const BackwardArgs& args, const HostSeqlens& host, core::AttnParams& p);
// attention_with_kvcache (src/api/validate_kvcache.cpp): p.cache describes the cache.
Status fill_kvcache_params(const KvCacheArgs& args, core::AttnParams& p);

// A fresh p with the sizes of a validated call (group = hq / hkv).
void start_params(std::int64_t batch, std::int64_t hq, std::int64_t hkv, std::int64_t dqk, std::int64_t dv, DType dt,
                  Device dev, core::AttnParams& p);
// p.scale (default 1 / sqrt(Dqk), p.dim_qk set) and p.scale_log2; rejects non-finite scales.
Status fill_scale(std::optional<float> scale, core::AttnParams& p);
// Presence, rank, dtype, device, per-dimension shape (-1 = any), contiguity, alignment, size.
Status check_tensor(const Tensor& t, const char* name, int rank, DType dtype, Device device,
                    std::initializer_list<std::int64_t> shape);
// Element strides of a [B, S, H, D] or [T, H, D] view.
core::Strides strides_of(const Tensor& t);
// The mask fields of p (kind, band, mechanism tensors) from m; p's sizes must be filled already.
Status fill_mask(const Mask& m, Device device, core::AttnParams& p);

// The band fields every mask kind carries: 1 <= cf < 2^31, 0 <= window < 2^31 (or none),
// |delta| < 2^62. With positions below 2^62 (the largest offset a view may reach) no step of the band
// arithmetic leaves int64: i + delta, floor((i + delta) / cf) - window, the per-element products
// j * cf and (j + window + 1) * cf (keys j < 2^31 on CUDA, where they run).
Status check_band(const Mask& m);

// A mask's band fields (causal, cf, delta, window) as the core band arithmetic takes them.
core::BandSpec band_spec(const Mask& m);

// The error of band tensors whose edge decreases at a row (core::describe_edge_error), from the
// host check and the device check alike.
Status band_edge_error(const core::BandEdgeError& e);

// The entries of block-sparse lists whose shapes fill_*_params accepted for p, read as host memory:
// counts within the slots, kv tiles within the sequence, no kv tile twice for one q-tile.
Status check_block_sparse_entries(const BlockSparseMask& lists, const core::AttnParams& p);

// cu_seqlens: non-decreasing, first 0, last == total; returns the longest sequence in *max_len.
Status check_cu_seqlens(const std::int32_t* cu, std::int64_t count, std::int64_t total, const char* name,
                        std::int64_t* max_len);

}  // namespace ccattn::api
