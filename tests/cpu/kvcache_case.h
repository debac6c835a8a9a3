// A KV-cache problem on the host, shared by the CPU tests (tests/cpu/test_kvcache.cpp) and the GPU
// tests (tests/cuda/test_decode.cu): per sequence its logical keys and values (cache rows, then the
// rows this call appends), a contiguous or paged cache holding the first cache_lens[b] of them (pages
// in random order, unused rows NaN, so that reading one shows), new queries, and the fp64 oracle of
// each sequence from its logical keys (cpu::reference_forward on a plain call with delta_b explicit).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "api/validate.h"
#include "ccattn/ccattn.h"
#include "core/dtype.h"
#include "cpu/reference.h"

namespace ccattn::test {

struct KvCacheShape {
    int batch = 2;
    std::int64_t seqlen_q = 1;
    int heads_q = 4, heads_kv = 2, dim_qk = 64, dim_v = 64;
    DType dtype = DType::bf16;
    std::vector<std::int32_t> cache_lens = {5, 9};  // rows before the call, per sequence
    std::int64_t new_rows = 0;                      // appended by the call
    std::int64_t capacity = 32;                     // rows per sequence (paged: rounded up to pages)
    std::int64_t page_size = 0;                     // 0: contiguous cache
    std::vector<std::int32_t> query_pos;            // empty: not given
    std::uint64_t seed = 1;
};

class KvCacheCase {
public:
    explicit KvCacheCase(const KvCacheShape& s) : shape(s) {
        std::mt19937_64 rng(s.seed);
        std::normal_distribution<float> normal(0.f, 1.f);
        const bool bf16 = s.dtype == DType::bf16;
        auto random = [&](std::size_t n) {
            std::vector<std::uint16_t> v(n);
            for (auto& x : v) x = core::from_float(normal(rng), bf16);
            return v;
        };
        const std::uint16_t nan = bf16 ? 0x7fc0 : 0x7e00;
        q = random(std::size_t(s.batch * s.seqlen_q * s.heads_q * s.dim_qk));
        for (int b = 0; b < s.batch; ++b) {
            const std::int64_t sk = s.cache_lens[std::size_t(b)] + s.new_rows;
            keys.push_back(random(std::size_t(sk * s.heads_kv * s.dim_qk)));
            values.push_back(random(std::size_t(sk * s.heads_kv * s.dim_v)));
        }
        paged = s.page_size > 0;
        page_rows = paged ? s.page_size : s.capacity;
        max_pages = paged ? (s.capacity + s.page_size - 1) / s.page_size : 1;
        num_pages = paged ? s.batch * max_pages + 3 : s.batch;  // paged: a few pages no sequence uses
        std::vector<std::int32_t> order(static_cast<std::size_t>(num_pages));
        std::iota(order.begin(), order.end(), 0);
        if (paged) std::shuffle(order.begin(), order.end(), rng);
        page_table.assign(std::size_t(s.batch * max_pages), 0);
        for (std::size_t e = 0; e < page_table.size(); ++e) page_table[e] = order[e];
        k_cache.assign(std::size_t(num_pages * page_rows * s.heads_kv * s.dim_qk), nan);
        v_cache.assign(std::size_t(num_pages * page_rows * s.heads_kv * s.dim_v), nan);
        k_new.assign(std::size_t(s.batch * s.new_rows * s.heads_kv * s.dim_qk) + 8, 0);
        v_new.assign(std::size_t(s.batch * s.new_rows * s.heads_kv * s.dim_v) + 8, 0);
        for (int b = 0; b < s.batch; ++b) {
            const std::int64_t len = s.cache_lens[std::size_t(b)];
            for (std::int64_t j = 0; j < len + s.new_rows; ++j) {
                const bool in_cache = j < len;
                for (int h = 0; h < s.heads_kv; ++h) {
                    const std::size_t kk = std::size_t((j * s.heads_kv + h) * s.dim_qk), vv = std::size_t((j * s.heads_kv + h) * s.dim_v);
                    std::uint16_t* kd = in_cache ? &k_cache[cache_row(b, j, h, s.dim_qk)] : &k_new[new_row(b, j - len, h, s.dim_qk)];
                    std::uint16_t* vd = in_cache ? &v_cache[cache_row(b, j, h, s.dim_v)] : &v_new[new_row(b, j - len, h, s.dim_v)];
                    std::memcpy(kd, &keys[std::size_t(b)][kk], std::size_t(s.dim_qk) * 2);
                    std::memcpy(vd, &values[std::size_t(b)][vv], std::size_t(s.dim_v) * 2);
                }
            }
        }
        seqlens = s.cache_lens;
        out.assign(std::size_t(s.batch * s.seqlen_q * s.heads_q * s.dim_v), nan);
        lse.assign(std::size_t(s.batch * s.heads_q * s.seqlen_q), std::nanf(""));
    }

    // Element offset of key j (head h) of sequence b in a cache of head dim `dim`.
    std::size_t cache_row(int b, std::int64_t j, int h, int dim) const {
        const std::int64_t page = paged ? page_table[std::size_t(b * max_pages + j / page_rows)] : b;
        return std::size_t(((page * page_rows + j % page_rows) * shape.heads_kv + h) * dim);
    }
    std::size_t new_row(int b, std::int64_t i, int h, int dim) const {
        return std::size_t(((b * shape.new_rows + i) * shape.heads_kv + h) * dim);
    }

    // Host views of everything (backend cpu); the GPU tests swap in device pointers.
    KvCacheArgs args(const Mask& mask) {
        const KvCacheShape& s = shape;
        KvCacheArgs a;
        a.q = Tensor::contiguous(q.data(), s.dtype, {s.batch, s.seqlen_q, s.heads_q, s.dim_qk});
        a.k_cache = Tensor::contiguous(k_cache.data(), s.dtype, {num_pages, page_rows, s.heads_kv, s.dim_qk});
        a.v_cache = Tensor::contiguous(v_cache.data(), s.dtype, {num_pages, page_rows, s.heads_kv, s.dim_v});
        if (paged) a.page_table = Tensor::contiguous(page_table.data(), DType::int32, {s.batch, max_pages});
        a.cache_seqlens = Tensor::contiguous(seqlens.data(), DType::int32, {s.batch});
        if (s.new_rows > 0) {
            a.k_new = Tensor::contiguous(k_new.data(), s.dtype, {s.batch, s.new_rows, s.heads_kv, s.dim_qk});
            a.v_new = Tensor::contiguous(v_new.data(), s.dtype, {s.batch, s.new_rows, s.heads_kv, s.dim_v});
        }
        if (!s.query_pos.empty()) {
            query_pos = s.query_pos;
            a.query_pos = Tensor::contiguous(query_pos.data(), DType::int32, {s.batch});
        }
        a.out = Tensor::contiguous(out.data(), s.dtype, {s.batch, s.seqlen_q, s.heads_q, s.dim_v});
        a.lse = Tensor::contiguous(lse.data(), DType::fp32, {s.batch, s.heads_q, s.seqlen_q});
        a.mask = mask;
        a.backend = Backend::cpu;
        return a;
    }

    // delta of sequence b under `band` (docs/semantics.md): the mask's, or its default for (Sq, Sk_b),
    // plus the queries' position.
    std::int64_t delta(const Mask& band, int b) const {
        const std::int64_t sk = shape.cache_lens[std::size_t(b)] + shape.new_rows;
        const std::int64_t d = band.diag_offset.value_or(band.compress_factor == 1 ? sk - shape.seqlen_q : 0);
        return d + (shape.query_pos.empty() ? 0 : shape.query_pos[std::size_t(b)]);
    }

    // The fp64 oracle of sequence b under `band` (a band mask), out [(i * Hq + h) * Dv + d], lse [i * Hq + h].
    cpu::Reference oracle(const Mask& band, int b) const {
        const KvCacheShape& s = shape;
        const std::int64_t sk = s.cache_lens[std::size_t(b)] + s.new_rows;
        std::vector<std::uint16_t> scratch(std::size_t(s.seqlen_q * s.heads_q * s.dim_v) + 8);
        std::vector<float> lse_scratch(std::size_t(s.heads_q * s.seqlen_q) + 1);
        ForwardArgs a;
        auto* qb = const_cast<std::uint16_t*>(q.data()) + b * s.seqlen_q * s.heads_q * s.dim_qk;
        a.q = Tensor::contiguous(qb, s.dtype, {1, s.seqlen_q, s.heads_q, s.dim_qk});
        a.k = Tensor::contiguous(const_cast<std::uint16_t*>(keys[std::size_t(b)].data()), s.dtype, {1, sk, s.heads_kv, s.dim_qk});
        a.v = Tensor::contiguous(const_cast<std::uint16_t*>(values[std::size_t(b)].data()), s.dtype, {1, sk, s.heads_kv, s.dim_v});
        if (sk == 0) a.k.data = a.v.data = scratch.data();  // empty but present
        a.out = Tensor::contiguous(scratch.data(), s.dtype, {1, s.seqlen_q, s.heads_q, s.dim_v});
        a.lse = Tensor::contiguous(lse_scratch.data(), DType::fp32, {1, s.heads_q, s.seqlen_q});
        a.mask = band;
        a.mask.diag_offset = delta(band, b);
        core::AttnParams p;
        const Status st = api::fill_forward_params(a, {}, p);
        if (!st.ok()) throw std::runtime_error("oracle params: " + st.to_string());
        return cpu::reference_forward(p);
    }

    // out and lse of every sequence against the oracle: relative L2 error <= norm_tol per sequence,
    // every element within max_tol of the largest |ref|; empty rows exactly 0 and -inf.
    void expect_matches(const Mask& band, double norm_tol, double max_tol) const {
        const KvCacheShape& s = shape;
        const bool bf16 = s.dtype == DType::bf16;
        for (int b = 0; b < s.batch; ++b) {
            const cpu::Reference ref = oracle(band, b);
            double num = 0, den = 0, err = 0, mag = 0;
            for (std::int64_t i = 0; i < s.seqlen_q; ++i)
                for (int h = 0; h < s.heads_q; ++h) {
                    const double want_lse = ref.lse[std::size_t(i * s.heads_q + h)];
                    const double got_lse = lse[std::size_t((b * s.heads_q + h) * s.seqlen_q + i)];
                    if (std::isinf(want_lse)) ASSERT_TRUE(std::isinf(got_lse) && got_lse < 0) << "b " << b << " i " << i << " h " << h;
                    else ASSERT_NEAR(got_lse, want_lse, 1e-3 * (1 + std::fabs(want_lse))) << "b " << b << " i " << i << " h " << h;
                    for (int d = 0; d < s.dim_v; ++d) {
                        const double want = ref.out[std::size_t((i * s.heads_q + h) * s.dim_v + d)];
                        const double got = core::to_float(out[std::size_t(((b * s.seqlen_q + i) * s.heads_q + h) * s.dim_v + d)], bf16);
                        ASSERT_FALSE(std::isnan(got)) << "b " << b << " i " << i << " h " << h << " d " << d;
                        if (std::isinf(want_lse)) ASSERT_EQ(got, 0.0) << "empty row, b " << b << " i " << i;
                        num += (got - want) * (got - want);
                        den += want * want;
                        err = std::max(err, std::fabs(got - want));
                        mag = std::max(mag, std::fabs(want));
                    }
                }
            EXPECT_LE(den == 0 ? std::sqrt(num) : std::sqrt(num / den), norm_tol) << "sequence " << b;
            EXPECT_LE(mag == 0 ? err : err / mag, max_tol) << "sequence " << b;
        }
    }

    // After an appending call: every logical key and value sits in its cache row.
    ::testing::AssertionResult cache_holds_keys() const {
        const KvCacheShape& s = shape;
        for (int b = 0; b < s.batch; ++b)
            for (std::int64_t j = 0; j < s.cache_lens[std::size_t(b)] + s.new_rows; ++j)
                for (int h = 0; h < s.heads_kv; ++h) {
                    const auto& kb = keys[std::size_t(b)];
                    const auto& vb = values[std::size_t(b)];
                    if (std::memcmp(&k_cache[cache_row(b, j, h, s.dim_qk)], &kb[std::size_t((j * s.heads_kv + h) * s.dim_qk)], std::size_t(s.dim_qk) * 2) ||
                        std::memcmp(&v_cache[cache_row(b, j, h, s.dim_v)], &vb[std::size_t((j * s.heads_kv + h) * s.dim_v)], std::size_t(s.dim_v) * 2))
                        return ::testing::AssertionFailure() << "cache row " << j << " of sequence " << b << " head " << h;
                }
        return ::testing::AssertionSuccess();
    }

    KvCacheShape shape;
    bool paged = false;
    std::int64_t page_rows = 0, max_pages = 1, num_pages = 0;
    std::vector<std::uint16_t> q, k_cache, v_cache, k_new, v_new, out;
    std::vector<float> lse;
    std::vector<std::int32_t> page_table, seqlens, query_pos;
    std::vector<std::vector<std::uint16_t>> keys, values;  // logical [Sk_b, Hkv, D] per sequence
};

}  // namespace ccattn::test
