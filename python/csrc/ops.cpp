// The torch operators ccattn::fwd, ccattn::bwd and ccattn::kvcache on CPU and CUDA tensors: each checks that its
// tensors share q's device, allocates its outputs, and calls ccattn::forward / ccattn::backward,
// which validates everything else. The fake (meta) and autograd registrations live in
// python/ccattn/_ops.py.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>
#ifdef CCATTN_TORCH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

#include <optional>
#include <tuple>
#include <vector>

#include "convert.h"

namespace ccattn::torch_ext {
namespace {

using OptTensor = std::optional<at::Tensor>;

struct Launch {
    Backend backend = Backend::cpu;
    void* stream = nullptr;
    int num_threads = 0;
};

Launch cpu_launch() { return {Backend::cpu, nullptr, at::get_num_threads()}; }

// The library works on torch's current stream of q's device, so it is ordered with torch's own work.
// Built without CUDA (in ccattn or in torch) there is no stream, and ccattn::forward reports that
// its CUDA backend is unavailable.
Launch cuda_launch([[maybe_unused]] const at::Tensor& q) {
#ifdef CCATTN_TORCH_CUDA
    return {Backend::cuda, c10::cuda::getCurrentCUDAStream(q.device().index()).stream(), 0};
#else
    return {Backend::cuda, nullptr, 0};
#endif
}

// The library takes any strides but needs a contiguous last dimension (autograd hands the backward
// expanded or transposed gradients); the copy is made only when needed.
at::Tensor last_dim_contiguous(const at::Tensor& t) {
    return t.dim() > 0 && t.size(-1) > 1 && t.stride(-1) != 1 ? t.contiguous() : t;
}

void check_rank(const at::Tensor& t, const char* name, bool varlen) {
    TORCH_CHECK_VALUE(t.dim() == (varlen ? 3 : 4), "ccattn: argument '", name, "' must be ",
                      varlen ? "[T, H, D] (varlen)" : "[B, S, H, D]", ", got shape ", t.sizes());
}

void check_device(const at::Tensor& t, const char* name, const at::Tensor& q) {
    TORCH_CHECK_VALUE(t.device() == q.device(), "ccattn: argument '", name, "' must be on q's device (", q.device(),
                      "), got ", t.device());
}

void check_devices(const at::Tensor& q, std::initializer_list<std::pair<const at::Tensor*, const char*>> tensors) {
    for (const auto& [t, name] : tensors)
        if (t != nullptr) check_device(*t, name, q);
}

const at::Tensor* ptr(const OptTensor& t) { return t ? &*t : nullptr; }

OptTensor last_dim_contiguous(const OptTensor& t) { return t ? OptTensor(last_dim_contiguous(*t)) : t; }

void set_seqlens(const OptTensor& cu_q, const OptTensor& cu_k, Tensor& q_view, Tensor& k_view) {
    if (cu_q) q_view = view(*cu_q, "cu_seqlens_q");
    if (cu_k) k_view = view(*cu_k, "cu_seqlens_k");
}

// The sequence-length arguments of a varlen call: bounds on the longest sequences and whether the
// cu_seqlens are checked (validate=False copies nothing to the host: capture-safe), and band tensors.
struct VarlenArgs {
    std::optional<int64_t> max_seqlen_q, max_seqlen_k;
    bool validate = true;
};

// Band tensors (lo, hi), replacing the band arguments when given; validate also covers their values.
struct BandArgs {
    OptTensor lo, hi;
};

BandArgs contiguous_band(const BandArgs& b) { return {last_dim_contiguous(b.lo), last_dim_contiguous(b.hi)}; }

// What forward and backward arguments share: sequence offsets, the band, scale, backend, stream.
template <class Args>
void set_call(const OptTensor& cu_q, const OptTensor& cu_k, bool causal, int64_t cf, std::optional<int64_t> diag_offset,
              std::optional<int64_t> window_left, std::optional<double> scale, const VarlenArgs& seqlens,
              const BandArgs& band, const Launch& launch, Args& a) {
    set_seqlens(cu_q, cu_k, a.cu_seqlens_q, a.cu_seqlens_k);
    a.varlen.check_cu_seqlens = seqlens.validate;
    a.varlen.max_seqlen_q = seqlens.max_seqlen_q;
    a.varlen.max_seqlen_k = seqlens.max_seqlen_k;
    a.mask = Mask::band(causal, cf, diag_offset, window_left);
    TORCH_CHECK_VALUE(band.lo.has_value() == band.hi.has_value(), "ccattn: argument 'band' needs both lo and hi");
    if (band.lo)
        a.mask = Mask::band_tensors(view(*band.lo, "band[0]"), view(*band.hi, "band[1]"), seqlens.validate);
    if (scale) a.scale = float(*scale);
    a.backend = launch.backend;
    a.stream = launch.stream;
    a.num_threads = launch.num_threads;
}

std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                                           const OptTensor& cu_q, const OptTensor& cu_k, bool causal, int64_t cf,
                                           std::optional<int64_t> diag_offset, std::optional<int64_t> window_left,
                                           std::optional<double> scale, const VarlenArgs& seqlens, const BandArgs& band_in,
                                           const Launch& launch) {
    const bool varlen = cu_q || cu_k;
    check_rank(q_in, "q", varlen);
    check_rank(v_in, "v", varlen);
    check_devices(q_in, {{&k_in, "k"}, {&v_in, "v"}, {ptr(cu_q), "cu_seqlens_q"}, {ptr(cu_k), "cu_seqlens_k"},
                         {ptr(band_in.lo), "band[0]"}, {ptr(band_in.hi), "band[1]"}});
    const at::Tensor q = last_dim_contiguous(q_in), k = last_dim_contiguous(k_in), v = last_dim_contiguous(v_in);
    const BandArgs band = contiguous_band(band_in);

    std::vector<int64_t> out_shape(q.sizes().begin(), q.sizes().end());
    out_shape.back() = v.size(-1);
    at::Tensor out = at::empty(out_shape, q.options());
    // lse [B, Hq, Sq], or [Hq, Tq] for varlen
    at::Tensor lse = varlen ? at::empty({q.size(1), q.size(0)}, q.options().dtype(at::kFloat))
                            : at::empty({q.size(0), q.size(2), q.size(1)}, q.options().dtype(at::kFloat));

    ForwardArgs a;
    a.q = view(q, "q");
    a.k = view(k, "k");
    a.v = view(v, "v");
    a.out = view(out, "out");
    a.lse = view(lse, "lse");
    set_call(cu_q, cu_k, causal, cf, diag_offset, window_left, scale, seqlens, band, launch, a);
    check(ccattn::forward(a), "attention");
    return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& dout_in, const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
    const at::Tensor& out_in, const at::Tensor& lse, const OptTensor& cu_q, const OptTensor& cu_k, bool causal,
    int64_t cf, std::optional<int64_t> diag_offset, std::optional<int64_t> window_left, std::optional<double> scale,
    const VarlenArgs& seqlens, const BandArgs& band_in, bool deterministic, const Launch& launch) {
    check_devices(q_in, {{&dout_in, "dout"}, {&k_in, "k"}, {&v_in, "v"}, {&out_in, "out"}, {&lse, "lse"},
                         {ptr(cu_q), "cu_seqlens_q"}, {ptr(cu_k), "cu_seqlens_k"}, {ptr(band_in.lo), "band[0]"},
                         {ptr(band_in.hi), "band[1]"}});
    const BandArgs band = contiguous_band(band_in);
    const at::Tensor q = last_dim_contiguous(q_in), k = last_dim_contiguous(k_in), v = last_dim_contiguous(v_in);
    const at::Tensor out = last_dim_contiguous(out_in), dout = last_dim_contiguous(dout_in);
    at::Tensor dq = at::empty(q.sizes(), q.options());
    at::Tensor dk = at::empty(k.sizes(), k.options());
    at::Tensor dv = at::empty(v.sizes(), v.options());

    BackwardArgs a;
    a.q = view(q, "q");
    a.k = view(k, "k");
    a.v = view(v, "v");
    a.out = view(out, "out");
    a.lse = view(lse, "lse");
    a.dout = view(dout, "dout");
    a.dq = view(dq, "dq");
    a.dk = view(dk, "dk");
    a.dv = view(dv, "dv");
    set_call(cu_q, cu_k, causal, cf, diag_offset, window_left, scale, seqlens, band, launch, a);
    a.deterministic = deterministic;
    check(ccattn::backward(a), "attention backward");
    return {dq, dk, dv};
}

// attention_with_kvcache: out [B, Sq, Hq, Dv] and lse [B, Hq, Sq]; k_cache / v_cache are written at the
// appended rows. Nothing is read back to the host (CUDA-graph capturable).
std::tuple<at::Tensor, at::Tensor> kvcache(const at::Tensor& q_in, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                           const at::Tensor& cache_seqlens, const OptTensor& page_table,
                                           const OptTensor& k_new_in, const OptTensor& v_new_in,
                                           const OptTensor& query_pos, bool causal, int64_t cf,
                                           std::optional<int64_t> diag_offset, std::optional<int64_t> window_left,
                                           std::optional<double> scale, int64_t num_splits, const Launch& launch) {
    check_devices(q_in, {{&k_cache, "k_cache"}, {&v_cache, "v_cache"}, {&cache_seqlens, "cache_seqlens"},
                         {ptr(page_table), "page_table"}, {ptr(k_new_in), "k_new"}, {ptr(v_new_in), "v_new"},
                         {ptr(query_pos), "query_pos"}});
    check_rank(q_in, "q", false);
    check_rank(v_cache, "v_cache", false);
    // The caches are written in place: no copies of them.
    TORCH_CHECK_VALUE(k_cache.stride(-1) == 1 && v_cache.stride(-1) == 1,
                      "ccattn: argument 'k_cache' / 'v_cache' must have a contiguous last dimension");
    const at::Tensor q = last_dim_contiguous(q_in);
    const OptTensor k_new = last_dim_contiguous(k_new_in), v_new = last_dim_contiguous(v_new_in);
    at::Tensor out = at::empty({q.size(0), q.size(1), q.size(2), v_cache.size(3)}, q.options());
    at::Tensor lse = at::empty({q.size(0), q.size(2), q.size(1)}, q.options().dtype(at::kFloat));
    KvCacheArgs a;
    a.q = view(q, "q");
    a.k_cache = view(k_cache, "k_cache");
    a.v_cache = view(v_cache, "v_cache");
    a.cache_seqlens = view(cache_seqlens, "cache_seqlens");
    if (page_table) a.page_table = view(*page_table, "page_table");
    if (k_new) a.k_new = view(*k_new, "k_new");
    if (v_new) a.v_new = view(*v_new, "v_new");
    if (query_pos) a.query_pos = view(*query_pos, "query_pos");
    a.out = view(out, "out");
    a.lse = view(lse, "lse");
    a.mask = Mask::band(causal, cf, diag_offset, window_left);
    if (scale) a.scale = float(*scale);
    TORCH_CHECK_VALUE(num_splits >= 0 && num_splits <= 256, "ccattn: argument 'num_splits' must be in [0, 256], got ",
                      num_splits);
    a.num_splits = int(num_splits);
    a.backend = launch.backend;
    a.stream = launch.stream;
    a.num_threads = launch.num_threads;
    check(ccattn::attention_with_kvcache(a), "attention_with_kvcache");
    return {out, lse};
}

template <bool kCuda>
std::tuple<at::Tensor, at::Tensor> kvcache_on(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                              const at::Tensor& cache_seqlens, const OptTensor& page_table,
                                              const OptTensor& k_new, const OptTensor& v_new, const OptTensor& query_pos,
                                              bool causal, int64_t cf, std::optional<int64_t> diag_offset,
                                              std::optional<int64_t> window_left, std::optional<double> scale,
                                              int64_t num_splits) {
    c10::DeviceGuard guard(q.device());
    return kvcache(q, k_cache, v_cache, cache_seqlens, page_table, k_new, v_new, query_pos, causal, cf, diag_offset,
                   window_left, scale, num_splits, kCuda ? cuda_launch(q) : cpu_launch());
}

// deterministic is fwd's so that autograd hands it to bwd: the forward itself always is.
std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                               const OptTensor& cu_q, const OptTensor& cu_k, bool causal, int64_t cf,
                                               std::optional<int64_t> diag_offset, std::optional<int64_t> window_left,
                                               std::optional<double> scale, std::optional<int64_t> max_seqlen_q,
                                               std::optional<int64_t> max_seqlen_k, bool validate,
                                               const OptTensor& band_lo, const OptTensor& band_hi,
                                               bool /*deterministic*/) {
    return forward(q, k, v, cu_q, cu_k, causal, cf, diag_offset, window_left, scale,
                   {max_seqlen_q, max_seqlen_k, validate}, {band_lo, band_hi}, cpu_launch());
}

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                const OptTensor& cu_q, const OptTensor& cu_k, bool causal, int64_t cf,
                                                std::optional<int64_t> diag_offset, std::optional<int64_t> window_left,
                                                std::optional<double> scale, std::optional<int64_t> max_seqlen_q,
                                                std::optional<int64_t> max_seqlen_k, bool validate,
                                                const OptTensor& band_lo, const OptTensor& band_hi,
                                                bool /*deterministic*/) {
    c10::DeviceGuard guard(q.device());  // the library launches on the current device
    return forward(q, k, v, cu_q, cu_k, causal, cf, diag_offset, window_left, scale,
                   {max_seqlen_q, max_seqlen_k, validate}, {band_lo, band_hi}, cuda_launch(q));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
    const at::Tensor& lse, const OptTensor& cu_q, const OptTensor& cu_k, bool causal, int64_t cf,
    std::optional<int64_t> diag_offset, std::optional<int64_t> window_left, std::optional<double> scale,
    std::optional<int64_t> max_seqlen_q, std::optional<int64_t> max_seqlen_k, bool validate, const OptTensor& band_lo,
    const OptTensor& band_hi, bool deterministic) {
    return backward(dout, q, k, v, out, lse, cu_q, cu_k, causal, cf, diag_offset, window_left, scale,
                    {max_seqlen_q, max_seqlen_k, validate}, {band_lo, band_hi}, deterministic, cpu_launch());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
    const at::Tensor& lse, const OptTensor& cu_q, const OptTensor& cu_k, bool causal, int64_t cf,
    std::optional<int64_t> diag_offset, std::optional<int64_t> window_left, std::optional<double> scale,
    std::optional<int64_t> max_seqlen_q, std::optional<int64_t> max_seqlen_k, bool validate, const OptTensor& band_lo,
    const OptTensor& band_hi, bool deterministic) {
    c10::DeviceGuard guard(q.device());
    return backward(dout, q, k, v, out, lse, cu_q, cu_k, causal, cf, diag_offset, window_left, scale,
                    {max_seqlen_q, max_seqlen_k, validate}, {band_lo, band_hi}, deterministic, cuda_launch(q));
}

}  // namespace
}  // namespace ccattn::torch_ext

TORCH_LIBRARY(ccattn, m) {
    // Varlen: max_seqlen_q / max_seqlen_k bound the longest sequences (checked when validate is true);
    // validate=False trusts cu_seqlens and copies nothing to the host (CUDA-graph capture), and trusts
    // that band tensors (band_lo, band_hi: int32/int64 [B, Sq] or [Tq]) are non-decreasing.
    // deterministic: BackwardArgs::deterministic for bwd (bitwise-identical gradients across calls);
    // fwd takes it only for its autograd formula, which passes fwd's arguments on to bwd.
    m.def("fwd(Tensor q, Tensor k, Tensor v, Tensor? cu_seqlens_q, Tensor? cu_seqlens_k, bool causal, "
          "int compress_factor, int? diag_offset, int? window_left, float? scale, int? max_seqlen_q=None, "
          "int? max_seqlen_k=None, bool validate=True, Tensor? band_lo=None, Tensor? band_hi=None, "
          "bool deterministic=False) -> (Tensor out, Tensor lse)");
    m.def("bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, Tensor? cu_seqlens_q, "
          "Tensor? cu_seqlens_k, bool causal, int compress_factor, int? diag_offset, int? window_left, "
          "float? scale, int? max_seqlen_q=None, int? max_seqlen_k=None, bool validate=True, "
          "Tensor? band_lo=None, Tensor? band_hi=None, bool deterministic=False) "
          "-> (Tensor dq, Tensor dk, Tensor dv)");
    // attention_with_kvcache: k_new / v_new (when given) are written into the caches at rows
    // cache_seqlens[b] ..; device contents are never read on the host (CUDA-graph capture).
    m.def("kvcache(Tensor q, Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor cache_seqlens, Tensor? page_table, "
          "Tensor? k_new, Tensor? v_new, Tensor? query_pos, bool causal, int compress_factor, int? diag_offset, "
          "int? window_left, float? scale, int num_splits=0) -> (Tensor out, Tensor lse)");
}

TORCH_LIBRARY_IMPL(ccattn, CPU, m) {
    m.impl("fwd", &ccattn::torch_ext::forward_cpu);
    m.impl("bwd", &ccattn::torch_ext::backward_cpu);
    m.impl("kvcache", &ccattn::torch_ext::kvcache_on<false>);
}

// Registered in every build: without CUDA in the library the call reports that plainly.
TORCH_LIBRARY_IMPL(ccattn, CUDA, m) {
    m.impl("fwd", &ccattn::torch_ext::forward_cuda);
    m.impl("bwd", &ccattn::torch_ext::backward_cuda);
    m.impl("kvcache", &ccattn::torch_ext::kvcache_on<true>);
}
