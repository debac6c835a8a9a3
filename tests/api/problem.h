// A small host problem for the API tests: storage for every tensor of a forward and a backward
// call, views of it, and snapshots that show whether a rejected call wrote anything.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "ccattn/ccattn.h"
#include "core/dtype.h"

namespace ccattn::test {

struct Dims {
    int batch = 2;
    std::int64_t seqlen_q = 5, seqlen_k = 7;
    int heads_q = 4, heads_kv = 2, dim_qk = 16, dim_v = 8;
    std::vector<std::int32_t> cu_q, cu_k;  // varlen when set (batch = size - 1)
    bool varlen() const { return !cu_q.empty(); }
};

class Problem {
public:
    explicit Problem(const Dims& d) : dims(d) {
        const std::int64_t rows_q = d.varlen() ? d.cu_q.back() : d.batch * d.seqlen_q;
        const std::int64_t rows_k = d.varlen() ? d.cu_k.back() : d.batch * d.seqlen_k;
        // One spare element keeps even empty tensors non-null.
        auto sized = [](std::int64_t n) { return std::vector<std::uint16_t>(std::size_t(n + 1)); };
        q_ = sized(rows_q * d.heads_q * d.dim_qk);
        k_ = sized(rows_k * d.heads_kv * d.dim_qk);
        v_ = sized(rows_k * d.heads_kv * d.dim_v);
        out_ = sized(rows_q * d.heads_q * d.dim_v);
        dout_ = sized(rows_q * d.heads_q * d.dim_v);
        dq_ = sized(rows_q * d.heads_q * d.dim_qk);
        dk_ = sized(rows_k * d.heads_kv * d.dim_qk);
        dv_ = sized(rows_k * d.heads_kv * d.dim_v);
        lse_.assign(std::size_t(rows_q * d.heads_q + 1), 0.f);
        cu_q_ = d.cu_q;
        cu_k_ = d.cu_k;

        std::mt19937_64 rng(std::random_device{}());
        std::normal_distribution<float> normal(0.f, 1.f);
        for (auto* b : {&q_, &k_, &v_, &out_, &dout_})
            for (auto& x : *b) x = core::float_to_bf16(normal(rng));
        poison();

        auto view = [&](std::vector<std::uint16_t>& b, std::int64_t rows, std::int64_t seqlen, int heads, int dim) {
            return d.varlen() ? Tensor::contiguous(b.data(), DType::bf16, {rows, heads, dim})
                              : Tensor::contiguous(b.data(), DType::bf16, {d.batch, seqlen, heads, dim});
        };
        q = view(q_, rows_q, d.seqlen_q, d.heads_q, d.dim_qk);
        k = view(k_, rows_k, d.seqlen_k, d.heads_kv, d.dim_qk);
        v = view(v_, rows_k, d.seqlen_k, d.heads_kv, d.dim_v);
        out = view(out_, rows_q, d.seqlen_q, d.heads_q, d.dim_v);
        dout = view(dout_, rows_q, d.seqlen_q, d.heads_q, d.dim_v);
        dq = view(dq_, rows_q, d.seqlen_q, d.heads_q, d.dim_qk);
        dk = view(dk_, rows_k, d.seqlen_k, d.heads_kv, d.dim_qk);
        dv = view(dv_, rows_k, d.seqlen_k, d.heads_kv, d.dim_v);
        lse = d.varlen() ? Tensor::contiguous(lse_.data(), DType::fp32, {d.heads_q, rows_q})
                         : Tensor::contiguous(lse_.data(), DType::fp32, {d.batch, d.heads_q, d.seqlen_q});
        if (d.varlen()) {
            cu_seqlens_q = Tensor::contiguous(cu_q_.data(), DType::int32, {std::int64_t(cu_q_.size())});
            cu_seqlens_k = Tensor::contiguous(cu_k_.data(), DType::int32, {std::int64_t(cu_k_.size())});
        }
    }

    // Output storage to a recognisable NaN pattern (before a forward: out and lse; before a backward:
    // dq, dk, dv).
    void poison() {
        for (auto* b : {&out_, &dq_, &dk_, &dv_}) std::fill(b->begin(), b->end(), std::uint16_t(0x7fc1));
        std::fill(lse_.begin(), lse_.end(), std::nanf("1"));
    }

    ForwardArgs forward_args() const {
        ForwardArgs a;
        a.q = q;
        a.k = k;
        a.v = v;
        a.out = out;
        a.lse = lse;
        a.cu_seqlens_q = cu_seqlens_q;
        a.cu_seqlens_k = cu_seqlens_k;
        a.backend = Backend::cpu;
        return a;
    }
    BackwardArgs backward_args() const {
        BackwardArgs a;
        a.q = q;
        a.k = k;
        a.v = v;
        a.out = out;
        a.lse = lse;
        a.dout = dout;
        a.dq = dq;
        a.dk = dk;
        a.dv = dv;
        a.cu_seqlens_q = cu_seqlens_q;
        a.cu_seqlens_k = cu_seqlens_k;
        a.backend = Backend::cpu;
        return a;
    }

    // The bytes every call may write (out, lse, dq, dk, dv), to compare before and after.
    struct Snapshot {
        std::vector<std::uint16_t> out, dq, dk, dv;
        std::vector<std::uint32_t> lse;
        bool operator==(const Snapshot& o) const {
            return out == o.out && dq == o.dq && dk == o.dk && dv == o.dv && lse == o.lse;
        }
    };
    Snapshot snapshot() const {
        Snapshot s{out_, dq_, dk_, dv_, {}};
        for (float x : lse_) {
            std::uint32_t u;
            std::memcpy(&u, &x, 4);
            s.lse.push_back(u);
        }
        return s;
    }

    float out_at(std::size_t e) const { return core::bf16_to_float(out_[e]); }
    float lse_at(std::size_t e) const { return lse_[e]; }
    float dk_at(std::size_t e) const { return core::bf16_to_float(dk_[e]); }
    float dv_at(std::size_t e) const { return core::bf16_to_float(dv_[e]); }
    float dq_at(std::size_t e) const { return core::bf16_to_float(dq_[e]); }

    Dims dims;
    Tensor q, k, v, out, lse, dout, dq, dk, dv, cu_seqlens_q, cu_seqlens_k;

private:
    std::vector<std::uint16_t> q_, k_, v_, out_, dout_, dq_, dk_, dv_;
    std::vector<float> lse_;
    std::vector<std::int32_t> cu_q_, cu_k_;
};

}  // namespace ccattn::test
