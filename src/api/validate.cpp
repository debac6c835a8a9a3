#include "api/validate.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/schedule.h"

namespace ccattn::api {
namespace {

constexpr std::int64_t kMaxHeadDim = 512;
constexpr std::int64_t kMaxOffset = std::int64_t(1) << 62;  // keeps every index sum in int64
constexpr std::int64_t kMaxBandFactor = std::int64_t(1) << 31;  // cf and window: products with keys fit

std::string dims(const Tensor& t) {
    if (t.rank < 0 || t.rank > Tensor::kMaxRank) return "rank " + std::to_string(t.rank);
    std::string s = "[";
    for (int d = 0; d < t.rank; ++d) s += (d ? ", " : "") + std::to_string(t.shape[d]);
    return s + "]";
}

// Largest element offset a view can reach, or -1 on overflow / negative sizes.
std::int64_t extent(const Tensor& t) {
    __int128 last = 0;
    for (int d = 0; d < t.rank; ++d) {
        if (t.shape[d] < 0 || t.stride[d] < 0) return -1;
        if (t.shape[d] == 0) return 0;
        last += __int128(t.shape[d] - 1) * t.stride[d];
        if (last >= kMaxOffset) return -1;
    }
    return std::int64_t(last);
}

// One cu_seqlens tensor and the longest sequence it describes: read from `cu` (host memory) when
// given, else the caller's bound `max_len` (unchecked device cu_seqlens), at most `total`.
Status check_lengths(const int32_t* cu, const Tensor& t, const char* name, std::optional<std::int64_t> max_len,
                     const char* max_name, std::int64_t batch, std::int64_t total, Device device,
                     std::int64_t* longest) {
    Status s = check_tensor(t, name, 1, DType::int32, device, {batch + 1});
    if (!s.ok()) return s;
    if (max_len && *max_len < 0) return Status::invalid(max_name, "must be >= 0, got " + std::to_string(*max_len));
    if (cu == nullptr) {
        if (!max_len) return Status::invalid(max_name, "is required when cu_seqlens are not checked");
        *longest = std::min(*max_len, total);
        return Status::success();
    }
    if (!(s = check_cu_seqlens(cu, batch + 1, total, name, longest)).ok()) return s;
    if (max_len && *max_len < *longest)
        return Status::invalid(max_name, std::to_string(*max_len) + " is below the longest sequence (" +
                                             std::to_string(*longest) + ")");
    return Status::success();
}

Status check_tile_lists(const Tensor& count, const Tensor& index, const char* count_name, const char* index_name,
                        std::int64_t batch, std::int64_t heads_q, std::int64_t q_tiles, Device device,
                        core::TileLists& lists) {
    if (!count.defined()) return Status::invalid(count_name, "is null");
    std::int64_t heads = count.rank == 3 ? count.shape[1] : -1;
    if (heads != 1 && heads != heads_q)
        return Status::invalid(count_name, "must be [B, Hq or 1, num_q_tiles], got " + dims(count));
    Status s = check_tensor(count, count_name, 3, DType::int32, device, {batch, heads, q_tiles});
    if (!s.ok()) return s;
    s = check_tensor(index, index_name, 4, DType::int32, device, {batch, heads, q_tiles, -1});
    if (!s.ok()) return s;
    lists.count = static_cast<const std::int32_t*>(count.data);
    lists.index = static_cast<const std::int32_t*>(index.data);
    lists.count_batch_stride = count.stride[0];
    lists.count_head_stride = heads == 1 ? 0 : count.stride[1];
    lists.count_tile_stride = count.stride[2];
    lists.index_batch_stride = index.stride[0];
    lists.index_head_stride = heads == 1 ? 0 : index.stride[1];
    lists.index_tile_stride = index.stride[2];
    return Status::success();
}

// Counts within [0, slots], kv tiles within [0, kv_tiles), in one list (host memory).
Status check_list_entries(const Tensor& count, const Tensor& index, const char* count_name, const char* index_name,
                          std::int64_t kv_tiles) {
    const auto* c = static_cast<const std::int32_t*>(count.data);
    const auto* x = static_cast<const std::int32_t*>(index.data);
    const std::int64_t slots = index.shape[3];
    for (std::int64_t b = 0; b < count.shape[0]; ++b)
        for (std::int64_t h = 0; h < count.shape[1]; ++h)
            for (std::int64_t t = 0; t < count.shape[2]; ++t) {
                std::int32_t n = c[b * count.stride[0] + h * count.stride[1] + t * count.stride[2]];
                if (n < 0 || n > slots)
                    return Status::invalid(count_name, "entry " + std::to_string(n) + " outside [0, " +
                                                           std::to_string(slots) + "]");
                for (std::int32_t e = 0; e < n; ++e) {
                    std::int32_t kv = x[b * index.stride[0] + h * index.stride[1] + t * index.stride[2] + e * index.stride[3]];
                    if (kv < 0 || kv >= kv_tiles)
                        return Status::invalid(index_name, "kv tile " + std::to_string(kv) + " outside [0, " +
                                                               std::to_string(kv_tiles) + ")");
                }
            }
    return Status::success();
}

// A kv tile listed twice for one q-tile (in either list) would be counted twice.
Status check_no_repeated_tiles(const BlockSparseMask& bs, std::int64_t batch, std::int64_t q_tiles,
                               std::int64_t kv_tiles) {
    struct List {
        const Tensor& count;
        const Tensor& index;
        const char* name;
    };
    const List lists[2] = {{bs.full_count, bs.full_index, "mask.block_sparse.full_index"},
                           {bs.partial_count, bs.partial_index, "mask.block_sparse.partial_index"}};
    const std::int64_t heads = std::max(bs.full_count.shape[1], bs.partial_count.shape[1]);
    std::vector<std::int64_t> seen_in(std::size_t(kv_tiles), -1);  // last (b, h, q-tile) key listing it
    std::int64_t key = 0;
    for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t h = 0; h < heads; ++h)
            for (std::int64_t t = 0; t < q_tiles; ++t, ++key)
                for (const List& l : lists) {
                    const std::int64_t hl = l.count.shape[1] == 1 ? 0 : h;
                    const auto* c = static_cast<const std::int32_t*>(l.count.data);
                    const auto* x = static_cast<const std::int32_t*>(l.index.data);
                    const std::int32_t n = c[b * l.count.stride[0] + hl * l.count.stride[1] + t * l.count.stride[2]];
                    for (std::int32_t e = 0; e < n; ++e) {
                        const std::int32_t kv = x[b * l.index.stride[0] + hl * l.index.stride[1] +
                                                  t * l.index.stride[2] + e * l.index.stride[3]];
                        if (seen_in[std::size_t(kv)] == key)
                            return Status::invalid(l.name, "kv tile " + std::to_string(kv) +
                                                               " is listed twice for q-tile " + std::to_string(t));
                        seen_in[std::size_t(kv)] = key;
                    }
                }
    return Status::success();
}

// One edge of band tensors: int32 or int64, [B, Sq], or [Tq] with varlen, on q's device.
Status check_band_edge(const Tensor& t, const char* name, Device device, const core::AttnParams& p,
                       core::RowTensor& edge) {
    if (!t.defined()) return Status::invalid(name, "is null");
    if (t.dtype != DType::int32 && t.dtype != DType::int64)
        return Status::invalid(name, std::string("dtype must be int32 or int64, got ") + dtype_name(t.dtype));
    const Status s = p.varlen() ? check_tensor(t, name, 1, t.dtype, device, {p.total_q})
                                : check_tensor(t, name, 2, t.dtype, device, {p.batch, p.seqlen_q});
    if (!s.ok()) return s;
    edge.data = t.data;
    edge.wide = t.dtype == DType::int64;
    edge.batch_stride = p.varlen() ? 0 : t.stride[0];
    edge.row_stride = t.stride[t.rank - 1];
    return Status::success();
}

}  // namespace

core::BandSpec band_spec(const Mask& m) {
    core::BandSpec s;
    s.causal = m.causal;
    s.compress_factor = m.compress_factor;
    s.has_diag_offset = m.diag_offset.has_value();
    s.diag_offset = m.diag_offset.value_or(0);
    s.window_left = m.window_left.value_or(core::kNoWindow);
    if (m.compress_factor >= 1 && m.compress_factor < (std::int64_t(1) << 31))  // else refused by validation
        s.cf_div = core::FastDiv(std::uint32_t(m.compress_factor));
    return s;
}

Status band_edge_error(const core::BandEdgeError& e) {
    return Status::invalid(e.edge == core::EdgeError::lo ? "mask.lo" : "mask.hi",
                           "must be non-decreasing within a sequence, but row " + std::to_string(e.row) +
                               " of sequence " + std::to_string(e.b) + " has " + std::to_string(e.now) + " after " +
                               std::to_string(e.before) + " (values clamped to [0, " + std::to_string(e.seqlen_k) + "])");
}

namespace {

// Host band tensors: lo and hi, clamped to [0, Sk], non-decreasing within each sequence. The
// first offending row (and sequence) is named.
Status check_band_monotone(const core::AttnParams& p) {
    for (int b = 0; b < p.batch; ++b) {
        const core::Sequence seq = core::sequence(p, b);
        const core::TensorBand band = core::tensor_band(p, b, seq);
        for (std::int64_t i = 1; i < seq.seqlen_q; ++i) {
            const core::EdgeError e = core::edge_error(band, i);
            if (e != core::EdgeError::none) return band_edge_error(core::describe_edge_error(band, b, i, e));
        }
    }
    return Status::success();
}

// Shared by the forward and the backward: q, k, v, out, lse, cu_seqlens, mask, scale.
Status fill_common(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                   const Tensor& cu_q, const Tensor& cu_k, const VarlenChecks& checks, const HostSeqlens& host,
                   const Mask& mask, std::optional<float> scale, core::AttnParams& p) {
    if (!q.defined()) return Status::invalid("q", "is null");
    if (q.dtype != DType::bf16 && q.dtype != DType::fp16)
        return Status::invalid("q", std::string("dtype must be bf16 or fp16, got ") + dtype_name(q.dtype));
    if (cu_q.defined() != cu_k.defined())
        return Status::invalid(cu_q.defined() ? "cu_seqlens_k" : "cu_seqlens_q",
                               "varlen needs both cu_seqlens_q and cu_seqlens_k");
    const bool varlen = cu_q.defined();
    if (varlen && (cu_q.rank != 1 || cu_q.shape[0] < 1))
        return Status::invalid("cu_seqlens_q", "must be an int32 vector [B + 1], got " + dims(cu_q));
    const int rank = varlen ? 3 : 4;
    const int r = varlen ? 0 : 1;  // index of the sequence dimension
    const DType dt = q.dtype;
    const Device dev = q.device;
    if (q.rank != rank)
        return Status::invalid("q", std::string("must be ") + (varlen ? "[Tq, Hq, D] with cu_seqlens" : "[B, Sq, Hq, D]") +
                                        ", got " + dims(q));
    Status s = check_tensor(q, "q", rank, dt, dev, {});
    if (!s.ok()) return s;
    const std::int64_t batch = varlen ? cu_q.shape[0] - 1 : q.shape[0];
    const std::int64_t hq = q.shape[r + 1], dqk = q.shape[r + 2];
    if (k.defined() && k.rank == rank && k.shape[r + 1] >= 1 && hq % k.shape[r + 1] != 0)
        return Status::invalid("k", "heads of q (" + std::to_string(hq) + ") must be a multiple of heads of k (" +
                                        std::to_string(k.shape[r + 1]) + ")");
    if (varlen) {
        s = check_tensor(k, "k", rank, dt, dev, {-1, -1, dqk});
    } else {
        s = check_tensor(k, "k", rank, dt, dev, {batch, -1, -1, dqk});
    }
    if (!s.ok()) return s;
    const std::int64_t sk = k.shape[r], hkv = k.shape[r + 1];
    s = varlen ? check_tensor(v, "v", rank, dt, dev, {sk, hkv, -1}) : check_tensor(v, "v", rank, dt, dev, {batch, sk, hkv, -1});
    if (!s.ok()) return s;
    const std::int64_t dv = v.shape[r + 2];
    const std::int64_t sq = q.shape[r];
    s = varlen ? check_tensor(out, "out", rank, dt, dev, {sq, hq, dv}) : check_tensor(out, "out", rank, dt, dev, {batch, sq, hq, dv});
    if (!s.ok()) return s;
    if (hq < 1) return Status::invalid("q", "needs at least one head");
    if (hkv < 1) return Status::invalid("k", "needs at least one head");
    if (dqk < 1 || dqk > kMaxHeadDim)
        return Status::unsupported("q", "head dim " + std::to_string(dqk) + " outside [1, " + std::to_string(kMaxHeadDim) + "]");
    if (dv < 1 || dv > kMaxHeadDim)
        return Status::unsupported("v", "head dim " + std::to_string(dv) + " outside [1, " + std::to_string(kMaxHeadDim) + "]");
    if (batch < 0 || batch > (std::int64_t(1) << 30)) return Status::invalid("q", "batch size out of range");

    start_params(batch, hq, hkv, dqk, dv, dt, dev, p);
    p.total_q = varlen ? sq : batch * sq;
    p.total_k = varlen ? sk : batch * sk;
    if (varlen) {
        // Host cu_seqlens are always read; device ones through their host copies, unless unchecked.
        std::int64_t max_q = 0, max_k = 0;
        const bool on_host = dev == Device::cpu, read = on_host || checks.check_cu_seqlens;
        const auto* hq_ptr = on_host ? static_cast<const std::int32_t*>(cu_q.data) : host.q;
        const auto* hk_ptr = on_host ? static_cast<const std::int32_t*>(cu_k.data) : host.k;
        if (read && (hq_ptr == nullptr || hk_ptr == nullptr))
            return Status::invalid(hq_ptr ? "cu_seqlens_k" : "cu_seqlens_q", "is null");
        s = check_lengths(read ? hq_ptr : nullptr, cu_q, "cu_seqlens_q", checks.max_seqlen_q, "max_seqlen_q", batch, sq,
                          dev, &max_q);
        if (!s.ok()) return s;
        s = check_lengths(read ? hk_ptr : nullptr, cu_k, "cu_seqlens_k", checks.max_seqlen_k, "max_seqlen_k", batch, sk,
                          dev, &max_k);
        if (!s.ok()) return s;
        p.seqlen_q = max_q;
        p.seqlen_k = max_k;
        p.cu_seqlens_q = static_cast<const std::int32_t*>(cu_q.data);
        p.cu_seqlens_k = static_cast<const std::int32_t*>(cu_k.data);
    } else {
        p.seqlen_q = sq;
        p.seqlen_k = sk;
    }
    p.q = q.data;
    p.k = k.data;
    p.v = v.data;
    p.out = out.data;
    p.q_strides = strides_of(q);
    p.k_strides = strides_of(k);
    p.v_strides = strides_of(v);
    p.out_strides = strides_of(out);

    if (lse.defined()) {
        s = varlen ? check_tensor(lse, "lse", 2, DType::fp32, dev, {hq, sq})
                   : check_tensor(lse, "lse", 3, DType::fp32, dev, {batch, hq, sq});
        if (!s.ok()) return s;
        p.lse = static_cast<float*>(lse.data);
        p.lse_batch_stride = varlen ? 0 : lse.stride[0];
        p.lse_head_stride = varlen ? lse.stride[0] : lse.stride[1];
    }

    if (!(s = fill_scale(scale, p)).ok()) return s;
    return fill_mask(mask, dev, p);
}

}  // namespace

Status fill_mask(const Mask& m, Device device, core::AttnParams& p) {
    p.mask_kind = m.kind;
    p.host_mask = &m;
    // The band fields describe the native mask, and the element predicate of the CUDA backend's
    // mask_mod and block-sparse paths: always checked.
    const Status s = check_band(m);
    if (!s.ok()) return s;
    p.band = band_spec(m);
    const bool host = device == Device::cpu;
    switch (m.kind) {
        case MaskKind::band:
            return Status::success();
        case MaskKind::mask_mod:
            if (host && !m.mask_mod) return Status::invalid("mask.mask_mod", "is empty");
            return Status::success();
        case MaskKind::custom_band:
            if (!m.custom_band.lo || !m.custom_band.hi) return Status::invalid("mask.custom_band", "needs both lo and hi");
            if (!host) return Status::unsupported("mask.custom_band", "host callables run on the CPU backend only");
            return Status::success();
        case MaskKind::band_tensors: {
            Status s = check_band_edge(m.tensor_band.lo, "mask.lo", device, p, p.band_rows.lo);
            if (s.ok()) s = check_band_edge(m.tensor_band.hi, "mask.hi", device, p, p.band_rows.hi);
            // Device tensors are checked on the device, by the CUDA backend (src/cuda/band_check.cu).
            if (s.ok() && host && m.tensor_band.validate) s = check_band_monotone(p);
            p.check_band_rows = !host && m.tensor_band.validate;
            return s;
        }
        case MaskKind::block_sparse: {
            const BlockSparseMask& bs = m.block_sparse;
            if (bs.tile_m < 1) return Status::invalid("mask.block_sparse.tile_m", "must be >= 1");
            if (bs.tile_n < 1) return Status::invalid("mask.block_sparse.tile_n", "must be >= 1");
            const std::int64_t q_tiles = core::num_tiles(p.seqlen_q, bs.tile_m);
            Status s = check_tile_lists(bs.full_count, bs.full_index, "mask.block_sparse.full_count",
                                        "mask.block_sparse.full_index", p.batch, p.heads_q, q_tiles, device,
                                        p.sparse_full);
            if (!s.ok()) return s;
            s = check_tile_lists(bs.partial_count, bs.partial_index, "mask.block_sparse.partial_count",
                                 "mask.block_sparse.partial_index", p.batch, p.heads_q, q_tiles, device,
                                 p.sparse_partial);
            if (!s.ok()) return s;
            // Device lists: checked only on request, from host copies (ccattn::forward / backward).
            if (host && !(s = check_block_sparse_entries(bs, p)).ok()) return s;
            if (host && !bs.mask_mod)
                return Status::invalid("mask.block_sparse.mask_mod", "is empty (partial tiles need it)");
            p.sparse_tile_m = bs.tile_m;
            p.sparse_tile_n = bs.tile_n;
            return Status::success();
        }
    }
    return Status::invalid("mask.kind", "unknown");
}

void start_params(std::int64_t batch, std::int64_t hq, std::int64_t hkv, std::int64_t dqk, std::int64_t dv, DType dt,
                  Device dev, core::AttnParams& p) {
    p = core::AttnParams{};
    p.batch = int(batch);
    p.heads_q = int(hq);
    p.heads_kv = int(hkv);
    p.group = int(hq / hkv);
    p.dim_qk = int(dqk);
    p.dim_v = int(dv);
    p.dtype = dt;
    p.device = dev;
}

Status fill_scale(std::optional<float> scale, core::AttnParams& p) {
    const float sc = scale.value_or(1.f / std::sqrt(float(p.dim_qk)));
    if (!std::isfinite(sc)) return Status::invalid("scale", "must be finite");
    p.scale = sc;
    p.scale_log2 = sc * 1.4426950408889634f;
    return Status::success();
}

Status check_tensor(const Tensor& t, const char* name, int rank, DType dtype, Device device,
                    std::initializer_list<std::int64_t> shape) {
    if (!t.defined()) return Status::invalid(name, "is null");
    if (t.rank != rank)
        return Status::invalid(name, "must have " + std::to_string(rank) + " dimensions, got " + dims(t));
    if (t.dtype != dtype)
        return Status::invalid(name, std::string("dtype must be ") + dtype_name(dtype) + ", got " + dtype_name(t.dtype));
    if (t.device != device) return Status::invalid(name, "must be on the same device as q");
    int d = 0;
    for (std::int64_t want : shape) {
        if (t.shape[d] < 0) return Status::invalid(name, "has a negative size " + dims(t));
        if (want >= 0 && t.shape[d] != want)
            return Status::invalid(name, "dimension " + std::to_string(d) + " must be " + std::to_string(want) +
                                             ", got shape " + dims(t));
        ++d;
    }
    if (t.stride[rank - 1] != 1 && t.shape[rank - 1] > 1)
        return Status::invalid(name, "last dimension must be contiguous (stride 1), got stride " +
                                         std::to_string(t.stride[rank - 1]));
    if (reinterpret_cast<std::uintptr_t>(t.data) % dtype_size(dtype) != 0)
        return Status::invalid(name, "data pointer is not aligned to its element size");
    if (extent(t) < 0) return Status::invalid(name, "sizes or strides are negative or overflow 64-bit offsets");
    return Status::success();
}

core::Strides strides_of(const Tensor& t) {
    if (t.rank == 4) return {t.stride[0], t.stride[1], t.stride[2]};
    return {0, t.stride[0], t.stride[1]};
}

Status check_band(const Mask& m) {
    if (m.compress_factor < 1 || m.compress_factor >= kMaxBandFactor)
        return Status::invalid("mask.compress_factor", "must be in [1, 2^31), got " + std::to_string(m.compress_factor));
    if (m.window_left && (*m.window_left < 0 || *m.window_left >= kMaxBandFactor))
        return Status::invalid("mask.window_left", "must be in [0, 2^31), got " + std::to_string(*m.window_left));
    if (m.diag_offset && (*m.diag_offset >= kMaxOffset || *m.diag_offset <= -kMaxOffset))
        return Status::invalid("mask.diag_offset", "magnitude must be below 2^62, got " + std::to_string(*m.diag_offset));
    return Status::success();
}

Status check_block_sparse_entries(const BlockSparseMask& bs, const core::AttnParams& p) {
    const std::int64_t q_tiles = core::num_tiles(p.seqlen_q, bs.tile_m);
    const std::int64_t kv_tiles = core::num_tiles(p.seqlen_k, bs.tile_n);
    Status s = check_list_entries(bs.full_count, bs.full_index, "mask.block_sparse.full_count",
                                  "mask.block_sparse.full_index", kv_tiles);
    if (s.ok())
        s = check_list_entries(bs.partial_count, bs.partial_index, "mask.block_sparse.partial_count",
                               "mask.block_sparse.partial_index", kv_tiles);
    return s.ok() ? check_no_repeated_tiles(bs, p.batch, q_tiles, kv_tiles) : s;
}

Status check_cu_seqlens(const std::int32_t* cu, std::int64_t count, std::int64_t total, const char* name,
                        std::int64_t* max_len) {
    if (cu == nullptr) return Status::invalid(name, "is null");
    if (cu[0] != 0) return Status::invalid(name, "must start at 0, got " + std::to_string(cu[0]));
    std::int64_t longest = 0;
    for (std::int64_t b = 1; b < count; ++b) {
        std::int64_t len = std::int64_t(cu[b]) - cu[b - 1];
        if (len < 0)
            return Status::invalid(name, "must be non-decreasing, but entry " + std::to_string(b) + " (" +
                                             std::to_string(cu[b]) + ") < entry " + std::to_string(b - 1) + " (" +
                                             std::to_string(cu[b - 1]) + ")");
        longest = len > longest ? len : longest;
    }
    if (cu[count - 1] != total)
        return Status::invalid(name, "last entry (" + std::to_string(cu[count - 1]) + ") must equal the number of rows (" +
                                         std::to_string(total) + ")");
    *max_len = longest;
    return Status::success();
}

Status fill_forward_params(const ForwardArgs& a, const HostSeqlens& host, core::AttnParams& p) {
    Status s = fill_common(a.q, a.k, a.v, a.out, a.lse, a.cu_seqlens_q, a.cu_seqlens_k, a.varlen, host, a.mask, a.scale, p);
    if (!s.ok()) return s;
    if (a.num_threads < 0) return Status::invalid("num_threads", "must be >= 0");
    if (a.num_splits < 0 || a.num_splits > kMaxSplits)
        return Status::invalid("num_splits", "must be in [0, " + std::to_string(kMaxSplits) + "], got " +
                                                 std::to_string(a.num_splits));
    p.num_splits = a.num_splits;
    p.num_threads = a.num_threads;
    p.stream = a.stream;
    return Status::success();
}

Status fill_backward_params(const BackwardArgs& a, const HostSeqlens& host, core::AttnParams& p) {
    if (!a.lse.defined()) return Status::invalid("lse", "is null (the backward needs the forward's lse)");
    Status s = fill_common(a.q, a.k, a.v, a.out, a.lse, a.cu_seqlens_q, a.cu_seqlens_k, a.varlen, host, a.mask, a.scale, p);
    if (!s.ok()) return s;
    const int rank = a.q.rank;
    auto same_shape = [&](const Tensor& t, const Tensor& like, const char* name) {
        if (!t.defined()) return Status::invalid(name, "is null");
        if (t.rank != rank) return Status::invalid(name, "must have the shape " + dims(like) + ", got " + dims(t));
        switch (rank) {
            case 3: return check_tensor(t, name, 3, p.dtype, p.device, {like.shape[0], like.shape[1], like.shape[2]});
            default:
                return check_tensor(t, name, 4, p.dtype, p.device, {like.shape[0], like.shape[1], like.shape[2], like.shape[3]});
        }
    };
    if (!(s = same_shape(a.dout, a.out, "dout")).ok()) return s;
    if (!(s = same_shape(a.dq, a.q, "dq")).ok()) return s;
    if (!(s = same_shape(a.dk, a.k, "dk")).ok()) return s;
    if (!(s = same_shape(a.dv, a.v, "dv")).ok()) return s;
    p.dout = a.dout.data;
    p.dq = a.dq.data;
    p.dk = a.dk.data;
    p.dv = a.dv.data;
    p.dout_strides = strides_of(a.dout);
    p.dq_strides = strides_of(a.dq);
    p.dk_strides = strides_of(a.dk);
    p.dv_strides = strides_of(a.dv);
    if (a.num_threads < 0) return Status::invalid("num_threads", "must be >= 0");
    p.num_threads = a.num_threads;
    p.stream = a.stream;
    p.deterministic = a.deterministic;
    return Status::success();
}

}  // namespace ccattn::api
