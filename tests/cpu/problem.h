// A random attention problem on the host for the CPU tests: inputs, poisoned outputs, optional
// non-contiguous strides and varlen, the public argument structs, and comparisons with the fp64
// reference.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "api/validate.h"
#include "ccattn/ccattn.h"
#include "core/dtype.h"
#include "cpu/reference.h"

namespace ccattn::test {

struct Config {
    int batch = 1;
    std::int64_t seqlen_q = 1, seqlen_k = 1;  // fixed length
    std::vector<std::int32_t> lens_q, lens_k;  // varlen when non-empty (batch = their size)
    int heads_q = 1, heads_kv = 1;
    int dim_qk = 64, dim_v = 64;
    DType dtype = DType::bf16;
    bool strided = false;  // gaps between heads, rows and batches: only the last dim contiguous
    std::uint64_t seed = 1;

    bool varlen() const { return !lens_q.empty(); }
};

// One 16-bit tensor [B, S, H, D] (or [T, H, D]) with its storage; gaps in the storage keep a
// poison pattern so stray writes show.
struct Buffer {
    std::vector<std::uint16_t> data;
    Tensor t;

    Buffer() = default;
    Buffer(DType dtype, std::vector<std::int64_t> shape, bool strided) {
        const std::int64_t gap = strided ? 3 : 0;  // unused elements after each head, row and batch
        std::int64_t stride[4] = {0, 0, 0, 0};
        std::int64_t st = 1;
        for (int d = int(shape.size()) - 1; d >= 0; --d) {
            stride[d] = st;
            st = st * shape[std::size_t(d)] + gap;
        }
        data.assign(std::size_t(st + 1), 0);
        t.data = data.data();
        t.dtype = dtype;
        t.rank = int(shape.size());
        for (int d = 0; d < t.rank; ++d) {
            t.shape[d] = shape[std::size_t(d)];
            t.stride[d] = stride[d];
        }
    }
    // Offset of (row over all sequences, head, e): rank 4 splits row into (b, i).
    std::int64_t offset(std::int64_t row, int h, int e) const {
        if (t.rank == 4) return (row / t.shape[1]) * t.stride[0] + (row % t.shape[1]) * t.stride[1] + h * t.stride[2] + e;
        return row * t.stride[0] + h * t.stride[1] + e;
    }
    std::int64_t rows() const { return t.rank == 4 ? t.shape[0] * t.shape[1] : t.shape[0]; }
    int heads() const { return int(t.shape[t.rank - 2]); }
    int dim() const { return int(t.shape[t.rank - 1]); }
    double at(std::int64_t row, int h, int e) const {
        return core::to_float(data[std::size_t(offset(row, h, e))], t.dtype == DType::bf16);
    }
    void set(std::int64_t row, int h, int e, float x) {
        data[std::size_t(offset(row, h, e))] = core::from_float(x, t.dtype == DType::bf16);
    }
    void fill_normal(std::mt19937_64& rng) {
        std::normal_distribution<float> n(0.f, 1.f);
        for (std::int64_t r = 0; r < rows(); ++r)
            for (int h = 0; h < heads(); ++h)
                for (int e = 0; e < dim(); ++e) set(r, h, e, n(rng));
    }
    void poison() {
        const std::uint16_t nan = t.dtype == DType::bf16 ? 0x7fc0 : 0x7e00;
        std::fill(data.begin(), data.end(), nan);
    }
    // Every element of the view was written (not NaN) and every gap still holds the poison.
    ::testing::AssertionResult written_exactly() const {
        std::vector<char> in_view(data.size(), 0);
        for (std::int64_t r = 0; r < rows(); ++r)
            for (int h = 0; h < heads(); ++h)
                for (int e = 0; e < dim(); ++e) {
                    in_view[std::size_t(offset(r, h, e))] = 1;
                    if (std::isnan(at(r, h, e)))
                        return ::testing::AssertionFailure() << "element (" << r << ", " << h << ", " << e << ") not written";
                }
        const std::uint16_t nan = t.dtype == DType::bf16 ? 0x7fc0 : 0x7e00;
        for (std::size_t x = 0; x < data.size(); ++x)
            if (!in_view[x] && data[x] != nan) return ::testing::AssertionFailure() << "write outside the view at " << x;
        return ::testing::AssertionSuccess();
    }
};

class Problem {
public:
    explicit Problem(const Config& c) : cfg(c), rng(c.seed) {
        const bool vl = c.varlen();
        batch = vl ? int(c.lens_q.size()) : c.batch;
        if (vl) {
            cu_q.push_back(0);
            cu_k.push_back(0);
            for (int b = 0; b < batch; ++b) {
                cu_q.push_back(cu_q.back() + c.lens_q[std::size_t(b)]);
                cu_k.push_back(cu_k.back() + c.lens_k[std::size_t(b)]);
            }
        }
        auto shape = [&](bool keys, int heads, int dim) -> std::vector<std::int64_t> {
            if (vl) return {keys ? cu_k.back() : cu_q.back(), heads, dim};
            return {batch, keys ? c.seqlen_k : c.seqlen_q, heads, dim};
        };
        q = Buffer(c.dtype, shape(false, c.heads_q, c.dim_qk), c.strided);
        k = Buffer(c.dtype, shape(true, c.heads_kv, c.dim_qk), c.strided);
        v = Buffer(c.dtype, shape(true, c.heads_kv, c.dim_v), c.strided);
        out = Buffer(c.dtype, shape(false, c.heads_q, c.dim_v), c.strided);
        dout = Buffer(c.dtype, shape(false, c.heads_q, c.dim_v), c.strided);
        dq = Buffer(c.dtype, shape(false, c.heads_q, c.dim_qk), c.strided);
        dk = Buffer(c.dtype, shape(true, c.heads_kv, c.dim_qk), c.strided);
        dv = Buffer(c.dtype, shape(true, c.heads_kv, c.dim_v), c.strided);
        for (Buffer* b : {&q, &k, &v, &dout}) b->fill_normal(rng);
        // lse [B, Hq, Sq] or [Hq, Tq]; strided problems leave gaps after each head and batch.
        const std::int64_t rows = q.rows(), gap = c.strided ? 2 : 0;
        const std::int64_t head_stride = (vl ? rows : c.seqlen_q) + gap, batch_stride = c.heads_q * head_stride + gap;
        lse.assign(std::size_t(vl ? c.heads_q * head_stride : batch * batch_stride) + 1, 0.f);
        lse_t = vl ? Tensor::contiguous(lse.data(), DType::fp32, {c.heads_q, rows})
                   : Tensor::contiguous(lse.data(), DType::fp32, {batch, c.heads_q, c.seqlen_q});
        lse_t.stride[0] = vl ? head_stride : batch_stride;
        if (!vl) lse_t.stride[1] = head_stride;
        if (vl) {
            cu_q_t = Tensor::contiguous(cu_q.data(), DType::int32, {batch + 1});
            cu_k_t = Tensor::contiguous(cu_k.data(), DType::int32, {batch + 1});
        }
    }

    ForwardArgs forward_args(const Mask& mask) const {
        ForwardArgs a;
        a.q = q.t;
        a.k = k.t;
        a.v = v.t;
        a.out = out.t;
        a.lse = lse_t;
        a.cu_seqlens_q = cu_q_t;
        a.cu_seqlens_k = cu_k_t;
        a.mask = mask;
        a.backend = Backend::cpu;
        a.num_threads = num_threads;
        a.scale = scale;
        return a;
    }
    BackwardArgs backward_args(const Mask& mask) const {
        BackwardArgs a;
        a.q = q.t;
        a.k = k.t;
        a.v = v.t;
        a.out = out.t;
        a.lse = lse_t;
        a.dout = dout.t;
        a.dq = dq.t;
        a.dk = dk.t;
        a.dv = dv.t;
        a.cu_seqlens_q = cu_q_t;
        a.cu_seqlens_k = cu_k_t;
        a.mask = mask;
        a.backend = Backend::cpu;
        a.num_threads = num_threads;
        a.scale = scale;
        return a;
    }

    // Poisons out and lse, runs the CPU forward, checks every element was written.
    void run_forward(const Mask& mask) {
        out.poison();
        std::fill(lse.begin(), lse.end(), std::nanf(""));
        Status s = ccattn::forward(forward_args(mask));
        ASSERT_TRUE(s.ok()) << s.to_string();
        ASSERT_TRUE(out.written_exactly());
        std::vector<char> in_view(lse.size(), 0);
        for (std::int64_t r = 0; r < q.rows(); ++r)
            for (int h = 0; h < cfg.heads_q; ++h) {
                ASSERT_FALSE(std::isnan(lse_at(r, h))) << "lse of row " << r << " head " << h << " not written";
                in_view[lse_index(r, h)] = 1;
            }
        for (std::size_t x = 0; x < lse.size(); ++x)
            if (!in_view[x]) ASSERT_TRUE(std::isnan(lse[x])) << "lse written outside the view at " << x;
    }
    void run_backward(const Mask& mask) {
        for (Buffer* b : {&dq, &dk, &dv}) b->poison();
        Status s = ccattn::backward(backward_args(mask));
        ASSERT_TRUE(s.ok()) << s.to_string();
        ASSERT_TRUE(dq.written_exactly());
        ASSERT_TRUE(dk.written_exactly());
        ASSERT_TRUE(dv.written_exactly());
    }

    // The validated params of the call (for the reference).
    core::AttnParams params(const Mask& mask) const {
        core::AttnParams p;
        Status s = api::fill_backward_params(backward_args(mask), {}, p);
        EXPECT_TRUE(s.ok()) << s.to_string();
        p.host_mask = &mask;  // the args' copy is gone; the caller's mask lives on
        return p;
    }

    // Index of (row over all sequences, head) in the lse storage.
    std::size_t lse_index(std::int64_t row, int h) const {
        if (cfg.varlen()) return std::size_t(h * lse_t.stride[0] + row);
        const std::int64_t b = row / cfg.seqlen_q, i = row % cfg.seqlen_q;
        return std::size_t(b * lse_t.stride[0] + h * lse_t.stride[1] + i);
    }
    double lse_at(std::int64_t row, int h) const { return lse[lse_index(row, h)]; }

    Config cfg;
    std::mt19937_64 rng;
    int batch = 0;
    int num_threads = 0;
    std::optional<float> scale;
    Buffer q, k, v, out, dout, dq, dk, dv;
    std::vector<float> lse;
    std::vector<std::int32_t> cu_q, cu_k;
    Tensor lse_t, cu_q_t, cu_k_t;
};

// ||x - ref|| / ||ref|| over a buffer against a dense reference vector [row][h][e].
inline double relative_error(const Buffer& x, const std::vector<double>& ref) {
    double num = 0, den = 0;
    for (std::int64_t r = 0; r < x.rows(); ++r)
        for (int h = 0; h < x.heads(); ++h)
            for (int e = 0; e < x.dim(); ++e) {
                const double want = ref[std::size_t((r * x.heads() + h) * x.dim() + e)];
                num += (x.at(r, h, e) - want) * (x.at(r, h, e) - want);
                den += want * want;
            }
    return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

// Largest |x - ref| relative to the largest |ref|.
inline double max_error(const Buffer& x, const std::vector<double>& ref) {
    double err = 0, mag = 0;
    for (std::int64_t r = 0; r < x.rows(); ++r)
        for (int h = 0; h < x.heads(); ++h)
            for (int e = 0; e < x.dim(); ++e) {
                const double want = ref[std::size_t((r * x.heads() + h) * x.dim() + e)];
                err = std::max(err, std::fabs(x.at(r, h, e) - want));
                mag = std::max(mag, std::fabs(want));
            }
    return mag == 0 ? err : err / mag;
}

// Bounds for outputs rounded to the dtype: with fp32 accumulation the error is the final rounding
// (and in the backward the rounding of out feeding D), measured at about 1.6e-3 (bf16) and 2e-4
// (fp16) relative in norm, 3e-3 / 4e-4 at most; the bounds leave a factor of 3 to 5.
inline double norm_tolerance(DType t) { return t == DType::bf16 ? 5e-3 : 1e-3; }
inline double max_tolerance(DType t) { return t == DType::bf16 ? 1.2e-2 : 2e-3; }

inline void expect_close(const Buffer& x, const std::vector<double>& ref, const char* what) {
    EXPECT_LE(relative_error(x, ref), norm_tolerance(x.t.dtype)) << what;
    EXPECT_LE(max_error(x, ref), max_tolerance(x.t.dtype)) << what;
}

// The forward's out and lse against the reference: empty rows exactly 0 / -inf.
inline void expect_forward_matches(const Problem& pr, const cpu::Reference& ref) {
    expect_close(pr.out, ref.out, "out");
    const int hq = pr.cfg.heads_q;
    for (std::int64_t r = 0; r < pr.q.rows(); ++r)
        for (int h = 0; h < hq; ++h) {
            const double want = ref.lse[std::size_t(r * hq + h)];
            const double got = pr.lse_at(r, h);
            if (std::isinf(want)) {
                ASSERT_TRUE(std::isinf(got) && got < 0) << "row " << r << " head " << h << " lse " << got;
                for (int e = 0; e < pr.cfg.dim_v; ++e) ASSERT_EQ(pr.out.at(r, h, e), 0.0) << "empty row " << r;
            } else {
                ASSERT_NEAR(got, want, 1e-4 * (1 + std::fabs(want))) << "row " << r << " head " << h;
            }
        }
}

inline void expect_backward_matches(const Problem& pr, const cpu::Reference& ref) {
    expect_close(pr.dq, ref.dq, "dq");
    expect_close(pr.dk, ref.dk, "dk");
    expect_close(pr.dv, ref.dv, "dv");
}

inline bool same_bits(const Buffer& a, const Buffer& b) { return a.data == b.data; }

// A fixed-length config of one head-dim pair.
inline Config make_config(std::int64_t sq, std::int64_t sk, int hq, int hkv, int d, DType t, std::uint64_t seed) {
    Config c;
    c.seqlen_q = sq;
    c.seqlen_k = sk;
    c.heads_q = hq;
    c.heads_kv = hkv;
    c.dim_qk = c.dim_v = d;
    c.dtype = t;
    c.seed = seed;
    return c;
}

// Forward and backward outputs of one run, for bitwise comparisons between mechanisms.
struct Outputs {
    Buffer out, dq, dk, dv;
    std::vector<float> lse;
};

inline Outputs run(Problem& pr, const Mask& mask) {
    pr.run_forward(mask);
    pr.run_backward(mask);
    return {pr.out, pr.dq, pr.dk, pr.dv, pr.lse};
}

inline void expect_same_bits(const Outputs& a, const Outputs& b, const std::string& what) {
    EXPECT_TRUE(same_bits(a.out, b.out)) << what << ": out";
    EXPECT_EQ(0, std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float))) << what << ": lse";
    EXPECT_TRUE(same_bits(a.dq, b.dq)) << what << ": dq";
    EXPECT_TRUE(same_bits(a.dk, b.dk)) << what << ": dk";
    EXPECT_TRUE(same_bits(a.dv, b.dv)) << what << ": dv";
}

}  // namespace ccattn::test
