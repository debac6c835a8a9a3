// The public entry points: validate once, then hand the params to the chosen backend.
#include "ccattn/attention.h"

#include <vector>

#include "api/backends.h"
#include "api/validate.h"

namespace ccattn {

const char* dtype_name(DType t) {
    switch (t) {
        case DType::bf16: return "bf16";
        case DType::fp16: return "fp16";
        case DType::fp32: return "fp32";
        case DType::int32: return "int32";
        case DType::int64: return "int64";
    }
    return "?";
}

bool cuda_available() { return cuda::available(); }

namespace {

// Host copies of device-resident cu_seqlens, so validation can read the lengths.
struct SeqlenCopies {
    std::vector<std::int32_t> q, k;
    api::HostSeqlens view;
};

Status copy_seqlens(const Tensor& cu_q, const Tensor& cu_k, const VarlenChecks& checks, SeqlenCopies& c) {
    if (!checks.check_cu_seqlens) return Status::success();  // read on the device only
    const Tensor* ts[2] = {&cu_q, &cu_k};
    std::vector<std::int32_t>* dst[2] = {&c.q, &c.k};
    const char* names[2] = {"cu_seqlens_q", "cu_seqlens_k"};
    for (int i = 0; i < 2; ++i) {
        const Tensor& t = *ts[i];
        if (!t.defined() || t.device != Device::cuda) continue;
        if (t.rank != 1 || t.dtype != DType::int32 || t.stride[0] != 1)
            return Status::invalid(names[i], "must be a contiguous int32 vector [B + 1]");
        dst[i]->resize(std::size_t(t.shape[0]));
        Status s = cuda::copy_to_host(static_cast<const std::int32_t*>(t.data), t.shape[0], dst[i]->data());
        if (!s.ok()) return s;
    }
    c.view.q = c.q.empty() ? nullptr : c.q.data();
    c.view.k = c.k.empty() ? nullptr : c.k.data();
    return Status::success();
}

// Elements from a validated view's pointer to its last element, inclusive.
std::int64_t span(const Tensor& t) {
    std::int64_t last = 0;
    for (int d = 0; d < t.rank; ++d) {
        if (t.shape[d] == 0) return 0;
        last += (t.shape[d] - 1) * t.stride[d];
    }
    return last + 1;
}

// Device block-sparse lists on request (BlockSparseMask::check_device_lists): host copies of the four
// validated tensors, checked as host lists are.
Status check_device_lists(const Mask& mask, const core::AttnParams& p) {
    const BlockSparseMask& bs = mask.block_sparse;
    if (mask.kind != MaskKind::block_sparse || p.device != Device::cuda || !bs.check_device_lists)
        return Status::success();
    BlockSparseMask host = bs;
    Tensor* views[4] = {&host.full_count, &host.full_index, &host.partial_count, &host.partial_index};
    std::vector<std::int32_t> copies[4];
    for (int l = 0; l < 4; ++l) {
        copies[l].resize(std::size_t(span(*views[l])) + 1);  // + 1: never empty, so the view is defined
        Status s = cuda::copy_to_host(static_cast<const std::int32_t*>(views[l]->data), span(*views[l]), copies[l].data());
        if (!s.ok()) return s;
        views[l]->data = copies[l].data();
        views[l]->device = Device::cpu;
    }
    return api::check_block_sparse_entries(host, p);
}

Status resolve_backend(Backend requested, Device device, Backend& chosen) {
    chosen = requested == Backend::automatic ? (device == Device::cuda ? Backend::cuda : Backend::cpu) : requested;
    if (chosen == Backend::cpu && device != Device::cpu)
        return Status::invalid("backend", "the cpu backend needs host tensors; q is on a CUDA device");
    if (chosen == Backend::cuda && device != Device::cuda)
        return Status::invalid("backend", "the cuda backend needs device tensors; q is in host memory");
    if (chosen == Backend::cuda && !cuda::available())
        return {Code::backend_unavailable, "backend", "no CUDA device (or ccattn was built without CUDA)"};
    return Status::success();
}

}  // namespace

Status forward(const ForwardArgs& args) {
    SeqlenCopies seqlens;
    Status s = copy_seqlens(args.cu_seqlens_q, args.cu_seqlens_k, args.varlen, seqlens);
    if (!s.ok()) return s;
    core::AttnParams p;
    if (!(s = api::fill_forward_params(args, seqlens.view, p)).ok()) return s;
    Backend chosen;
    if (!(s = resolve_backend(args.backend, p.device, chosen)).ok()) return s;
    if (!(s = check_device_lists(args.mask, p)).ok()) return s;
    return chosen == Backend::cuda ? cuda::forward(p) : cpu::forward(p);
}

Status attention_with_kvcache(const KvCacheArgs& args) {
    core::AttnParams p;
    Status s = api::fill_kvcache_params(args, p);
    if (!s.ok()) return s;
    Backend chosen;
    if (!(s = resolve_backend(args.backend, p.device, chosen)).ok()) return s;
    return chosen == Backend::cuda ? cuda::forward_kvcache(p) : cpu::forward_kvcache(p);
}

Status backward(const BackwardArgs& args) {
    SeqlenCopies seqlens;
    Status s = copy_seqlens(args.cu_seqlens_q, args.cu_seqlens_k, args.varlen, seqlens);
    if (!s.ok()) return s;
    core::AttnParams p;
    if (!(s = api::fill_backward_params(args, seqlens.view, p)).ok()) return s;
    Backend chosen;
    if (!(s = resolve_backend(args.backend, p.device, chosen)).ok()) return s;
    if (!(s = check_device_lists(args.mask, p)).ok()) return s;
    return chosen == Backend::cuda ? cuda::backward(p) : cpu::backward(p);
}

}  // namespace ccattn
