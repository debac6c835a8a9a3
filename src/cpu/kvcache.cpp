// CPU backend of attention_with_kvcache, the oracle of the CUDA one: append k_new / v_new to the
// cache, then per sequence gather its keys into a contiguous [1, Sk_b, Hkv, D] copy and run the plain
// forward (ccattn::forward) with the band's delta of that sequence made explicit.
#include <cstring>
#include <vector>

#include "api/backends.h"
#include "ccattn/attention.h"

namespace ccattn::cpu {
namespace {

constexpr int kElement = 2;  // bf16 / fp16 bytes

Tensor view4(const void* data, DType dt, std::int64_t s1, std::int64_t h, std::int64_t d, const core::Strides& st) {
    Tensor t;
    t.data = const_cast<void*>(data);
    t.dtype = dt;
    t.rank = 4;
    t.shape[0] = 1;
    t.shape[1] = s1;
    t.shape[2] = h;
    t.shape[3] = d;
    t.stride[0] = st.batch;
    t.stride[1] = st.row;
    t.stride[2] = st.head;
    t.stride[3] = 1;
    return t;
}

// Row i of sequence b's new keys (or values) to its cache row cache_seqlens[b] + i.
void append(const core::AttnParams& p, const void* src, const core::Strides& src_strides, void* cache,
            const core::Strides& cache_strides, int dim) {
    for (int b = 0; b < p.batch; ++b) {
        const core::Sequence seq = core::sequence(p, b);
        const std::int64_t first = seq.seqlen_k - p.cache.new_rows;
        for (std::int64_t i = 0; i < p.cache.new_rows; ++i)
            for (int h = 0; h < p.heads_kv; ++h)
                std::memcpy(static_cast<char*>(cache) + core::key_offset(p, cache_strides, b, seq, first + i, h) * kElement,
                            static_cast<const char*>(src) + core::offset(src_strides, b, 0, i, h) * kElement,
                            std::size_t(dim) * kElement);
    }
}

// Keys [0, Sk_b) of sequence b, head by head, as a contiguous [Sk_b, Hkv, dim] copy.
std::vector<unsigned char> gather(const core::AttnParams& p, int b, const core::Sequence& seq, const void* cache,
                                  const core::Strides& strides, int dim) {
    std::vector<unsigned char> rows(std::size_t(seq.seqlen_k * p.heads_kv * dim * kElement) + 16);  // never empty
    for (std::int64_t j = 0; j < seq.seqlen_k; ++j)
        for (int h = 0; h < p.heads_kv; ++h)
            std::memcpy(rows.data() + std::size_t((j * p.heads_kv + h) * dim * kElement),
                        static_cast<const char*>(cache) + core::key_offset(p, strides, b, seq, j, h) * kElement,
                        std::size_t(dim) * kElement);
    return rows;
}

}  // namespace

Status forward_kvcache(const core::AttnParams& p) {
    if (p.cache.new_rows > 0) {
        append(p, p.cache.k_new, p.cache.k_new_strides, const_cast<void*>(p.k), p.k_strides, p.dim_qk);
        append(p, p.cache.v_new, p.cache.v_new_strides, const_cast<void*>(p.v), p.v_strides, p.dim_v);
    }
    const Mask& mask = *p.host_mask;
    for (int b = 0; b < p.batch; ++b) {
        const core::Sequence seq = core::sequence(p, b);
        const std::vector<unsigned char> k = gather(p, b, seq, p.k, p.k_strides, p.dim_qk);
        const std::vector<unsigned char> v = gather(p, b, seq, p.v, p.v_strides, p.dim_v);
        const core::Strides k_dense{0, p.heads_kv * std::int64_t(p.dim_qk), p.dim_qk};
        const core::Strides v_dense{0, p.heads_kv * std::int64_t(p.dim_v), p.dim_v};
        ForwardArgs a;
        a.q = view4(static_cast<const char*>(p.q) + b * p.q_strides.batch * kElement, p.dtype, p.seqlen_q, p.heads_q,
                    p.dim_qk, p.q_strides);
        a.k = view4(k.data(), p.dtype, seq.seqlen_k, p.heads_kv, p.dim_qk, k_dense);
        a.v = view4(v.data(), p.dtype, seq.seqlen_k, p.heads_kv, p.dim_v, v_dense);
        a.out = view4(static_cast<char*>(p.out) + b * p.out_strides.batch * kElement, p.dtype, p.seqlen_q, p.heads_q,
                      p.dim_v, p.out_strides);
        if (p.lse != nullptr) {
            a.lse = Tensor::contiguous(p.lse + b * p.lse_batch_stride, DType::fp32, {1, p.heads_q, p.seqlen_q});
            a.lse.stride[0] = p.lse_batch_stride;
            a.lse.stride[1] = p.lse_head_stride;
        }
        a.mask = mask;
        a.mask.diag_offset = core::builtin_band(p, b, seq).diag_offset;
        if (mask.kind == MaskKind::mask_mod)
            a.mask.mask_mod = [&mask, b](int, int h, std::int64_t i, std::int64_t j) { return mask.mask_mod(b, h, i, j); };
        a.backend = Backend::cpu;
        a.num_threads = p.num_threads;
        const Status s = forward(a);
        if (!s.ok()) return {Code::internal, s.argument, "kv cache, sequence " + std::to_string(b) + ": " + s.message};
    }
    return Status::success();
}

}  // namespace ccattn::cpu
