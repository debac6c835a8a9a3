#include "cli/session.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <random>

namespace ccattn::cli {

Backend resolve_backend(Backend requested) {
    if (requested != Backend::automatic) return requested;
    return cuda_available() ? Backend::cuda : Backend::cpu;
}

const char* backend_name(Backend b) {
    switch (b) {
        case Backend::automatic: return "auto";
        case Backend::cpu: return "cpu";
        case Backend::cuda: return "cuda";
    }
    return "?";
}

namespace {

// A host copy of a contiguous host tensor (block-sparse lists, band tensors).
HostArray copy_list(const Tensor& t) {
    std::vector<std::int64_t> shape(t.shape, t.shape + t.rank);
    HostArray a = HostArray::zeros(t.dtype, shape);
    if (t.data != nullptr) std::memcpy(a.bytes.data(), t.data, a.size_bytes());
    return a;
}

// k or v [B, Sk, H, D] as a paged cache [B * pages, page_size, H, D]: row j of sequence b in page
// page_table[b, j / page_size], row j % page_size.
HostArray to_pages(const HostArray& a, std::int64_t page_size, const std::vector<std::int32_t>& page_table) {
    const std::int64_t batch = a.shape[0], sk = a.shape[1], pages = (sk + page_size - 1) / page_size;
    HostArray c = HostArray::zeros(a.dtype, {batch * pages, page_size, a.shape[2], a.shape[3]});
    const std::size_t row = std::size_t(a.shape[2] * a.shape[3] * dtype_size(a.dtype));
    for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t j = 0; j < sk; ++j) {
            const std::int64_t page = page_table[std::size_t(b * pages + j / page_size)];
            std::memcpy(c.bytes.data() + std::size_t(page * page_size + j % page_size) * row,
                        a.bytes.data() + std::size_t(b * sk + j) * row, row);
        }
    return c;
}

}  // namespace

Status Session::open_cache(const Inputs& in, std::int64_t page_size) {
    const std::int64_t batch = in.k.shape[0], sk = in.k.shape[1];
    Status s = place(seqlens_, HostArray::from_int32({batch}, std::vector<std::int32_t>(std::size_t(batch), std::int32_t(sk))));
    if (page_size == 0) {  // the inputs are a contiguous cache already
        cache_args_.k_cache = k_.view;
        cache_args_.v_cache = v_.view;
    } else {
        const std::int64_t pages = std::max<std::int64_t>(1, (sk + page_size - 1) / page_size);
        std::vector<std::int32_t> table(std::size_t(batch * pages));
        std::iota(table.begin(), table.end(), 0);
        std::shuffle(table.begin(), table.end(), std::mt19937(1));  // scattered, as a serving stack leaves them
        if (s.ok()) s = place(page_table_, HostArray::from_int32({batch, pages}, table));
        if (s.ok()) s = place(k_cache_, to_pages(in.k, page_size, table));
        if (s.ok()) s = place(v_cache_, to_pages(in.v, page_size, table));
        cache_args_.k_cache = k_cache_.view;
        cache_args_.v_cache = v_cache_.view;
        cache_args_.page_table = page_table_.view;
    }
    cache_args_.q = q_.view;
    cache_args_.cache_seqlens = seqlens_.view;
    cache_args_.out = out_.view;
    cache_args_.lse = lse_.view;
    return s;
}

Status Session::place(Slot& slot, const HostArray& a) {
    slot.host = a;
    if (a.empty_shape()) {  // absent (no dout, fixed length)
        slot.view = Tensor{};
        return Status::success();
    }
    if (backend_ == Backend::cpu) {
        slot.view = a.view(slot.host.bytes.data(), Device::cpu);
        return Status::success();
    }
    Status s = slot.device.allocate(a.size_bytes());
    if (s.ok()) s = slot.device.upload(a.bytes.data(), a.size_bytes());
    if (s.ok()) slot.view = a.view(slot.device.data(), Device::cuda);
    return s;
}

Status Session::open(const Inputs& in, const Mask& mask, Backend backend, std::optional<float> scale, int num_threads,
                     bool deterministic, std::int64_t kv_cache_page_size, int num_splits) {
    backend_ = backend;
    if (backend == Backend::cuda && !cuda_available())
        return {Code::backend_unavailable, "--backend",
                "cuda: no usable CUDA device, or ccattn was built without CUDA"};
    const Outputs outputs = Outputs::shaped_for(in);
    Status s;
    const std::pair<Slot*, const HostArray*> slots[] = {{&q_, &in.q},
                                                        {&k_, &in.k},
                                                        {&v_, &in.v},
                                                        {&dout_, &in.dout},
                                                        {&cu_q_, &in.cu_seqlens_q},
                                                        {&cu_k_, &in.cu_seqlens_k},
                                                        {&out_, &outputs.out},
                                                        {&lse_, &outputs.lse},
                                                        {&dq_, &outputs.dq},
                                                        {&dk_, &outputs.dk},
                                                        {&dv_, &outputs.dv}};
    for (const auto& [slot, array] : slots)
        if (!(s = place(*slot, *array)).ok()) return s;

    Mask m = mask;
    if (backend == Backend::cuda && mask.kind == MaskKind::band_tensors) {
        Tensor* edges[2] = {&m.tensor_band.lo, &m.tensor_band.hi};
        for (int e = 0; e < 2; ++e) {
            if (!(s = place(band_[std::size_t(e)], copy_list(*edges[e]))).ok()) return s;
            *edges[e] = band_[std::size_t(e)].view;
        }
    }
    if (backend == Backend::cuda && mask.kind == MaskKind::block_sparse) {
        BlockSparseMask& bs = m.block_sparse;
        Tensor* lists[4] = {&bs.full_count, &bs.full_index, &bs.partial_count, &bs.partial_index};
        for (int l = 0; l < 4; ++l) {
            if (!(s = place(sparse_[std::size_t(l)], copy_list(*lists[l]))).ok()) return s;
            *lists[l] = sparse_[std::size_t(l)].view;
        }
    }

    fwd_ = ForwardArgs{};
    fwd_.q = q_.view;
    fwd_.k = k_.view;
    fwd_.v = v_.view;
    fwd_.out = out_.view;
    fwd_.lse = lse_.view;
    fwd_.cu_seqlens_q = cu_q_.view;
    fwd_.cu_seqlens_k = cu_k_.view;
    fwd_.mask = m;
    fwd_.scale = scale;
    fwd_.backend = backend;
    fwd_.num_threads = num_threads;
    fwd_.num_splits = num_splits;
    kv_cache_ = kv_cache_page_size >= 0;
    if (kv_cache_) {
        cache_args_ = KvCacheArgs{};
        if (!(s = open_cache(in, kv_cache_page_size)).ok()) return s;
        cache_args_.mask = m;
        cache_args_.scale = scale;
        cache_args_.backend = backend;
        cache_args_.num_threads = num_threads;
        cache_args_.num_splits = num_splits;
    }

    bwd_ = BackwardArgs{};
    bwd_.q = q_.view;
    bwd_.k = k_.view;
    bwd_.v = v_.view;
    bwd_.out = out_.view;
    bwd_.lse = lse_.view;
    bwd_.dout = dout_.view;
    bwd_.dq = dq_.view;
    bwd_.dk = dk_.view;
    bwd_.dv = dv_.view;
    bwd_.cu_seqlens_q = cu_q_.view;
    bwd_.cu_seqlens_k = cu_k_.view;
    bwd_.mask = m;
    bwd_.scale = scale;
    bwd_.backend = backend;
    bwd_.num_threads = num_threads;
    bwd_.deterministic = deterministic;
    return Status::success();
}

Status Session::forward() { return kv_cache_ ? attention_with_kvcache(cache_args_) : ccattn::forward(fwd_); }

Status Session::backward() {
    if (!dout_.view.defined()) return Status::invalid("dout", "the backward needs dout");
    return ccattn::backward(bwd_);
}

Status Session::timed(bool backward, double& ms) {
    if (backend_ == Backend::cuda) {
        Status s = timer_.start();
        if (!s.ok()) return s;
        if (!(s = backward ? this->backward() : forward()).ok()) return s;
        return timer_.stop(ms);
    }
    const auto t0 = std::chrono::steady_clock::now();
    Status s = backward ? this->backward() : forward();
    ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return s;
}

Status Session::timed_forward(double& ms) { return timed(false, ms); }
Status Session::timed_backward(double& ms) { return timed(true, ms); }

Status Session::fetch(Outputs& out) const {
    const std::pair<const Slot*, HostArray*> slots[] = {
        {&out_, &out.out}, {&lse_, &out.lse}, {&dq_, &out.dq}, {&dk_, &out.dk}, {&dv_, &out.dv}};
    for (const auto& [slot, array] : slots) {
        *array = slot->host;
        if (backend_ == Backend::cuda && slot->view.defined()) {
            Status s = slot->device.download(array->bytes.data(), array->size_bytes());
            if (!s.ok()) return s;
        }
    }
    return Status::success();
}

}  // namespace ccattn::cli
