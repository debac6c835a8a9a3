// Valid edge cases through the public API: empty sequences, empty batches, no keys, no lse.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

#include "api/problem.h"
#include "api/validate.h"
#include "ccattn/ccattn.h"
#include "cpu/reference.h"

namespace ccattn::test {
namespace {

Dims fixed(int batch, std::int64_t sq, std::int64_t sk) {
    Dims d;
    d.batch = batch;
    d.seqlen_q = sq;
    d.seqlen_k = sk;
    return d;
}

TEST(ApiEdgeCases, NoQueriesIsAcceptedAndSumsNothing) {
    Problem p(fixed(2, 0, 7));
    ASSERT_TRUE(ccattn::forward(p.forward_args()).ok());
    const Status s = ccattn::backward(p.backward_args());
    ASSERT_TRUE(s.ok()) << s.to_string();
    // No query reads any key: dk and dv are zero.
    for (std::size_t e = 0; e < std::size_t(2 * 7 * 2 * 16); ++e) ASSERT_EQ(p.dk_at(e), 0.f) << e;
    for (std::size_t e = 0; e < std::size_t(2 * 7 * 2 * 8); ++e) ASSERT_EQ(p.dv_at(e), 0.f) << e;
}

TEST(ApiEdgeCases, NoKeysGivesEmptyRows) {
    Problem p(fixed(2, 5, 0));
    Status s = ccattn::forward(p.forward_args());
    ASSERT_TRUE(s.ok()) << s.to_string();
    for (std::size_t e = 0; e < std::size_t(2 * 5 * 4 * 8); ++e) ASSERT_EQ(p.out_at(e), 0.f) << e;
    for (std::size_t e = 0; e < std::size_t(2 * 4 * 5); ++e)
        ASSERT_TRUE(std::isinf(p.lse_at(e)) && p.lse_at(e) < 0) << e;
    s = ccattn::backward(p.backward_args());
    ASSERT_TRUE(s.ok()) << s.to_string();
    for (std::size_t e = 0; e < std::size_t(2 * 5 * 4 * 16); ++e) ASSERT_EQ(p.dq_at(e), 0.f) << e;
}

TEST(ApiEdgeCases, EmptyBatch) {
    Problem p(fixed(0, 5, 7));
    Status s = ccattn::forward(p.forward_args());
    EXPECT_TRUE(s.ok()) << s.to_string();
    s = ccattn::backward(p.backward_args());
    EXPECT_TRUE(s.ok()) << s.to_string();
    Dims d;
    d.cu_q = {0};
    d.cu_k = {0};
    Problem v(d);
    s = ccattn::forward(v.forward_args());
    EXPECT_TRUE(s.ok()) << s.to_string();
}

TEST(ApiEdgeCases, LseIsOptionalInTheForward) {
    Problem p(fixed(1, 3, 4));
    ForwardArgs a = p.forward_args();
    a.lse = Tensor{};
    const Status s = ccattn::forward(a);
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_FALSE(std::isnan(p.out_at(0)));
    EXPECT_TRUE(std::isnan(p.lse_at(0)));  // untouched
}

// Sequences with no queries, with no keys, and with both, beside ordinary ones; compared with the
// fp64 reference (empty rows: out 0, lse -inf; keys nobody reads: zero gradient).
TEST(ApiEdgeCases, EmptyVarlenSequences) {
    Dims d;
    d.cu_q = {0, 3, 3, 9, 9, 13};    // lengths 3, 0, 6, 0, 4
    d.cu_k = {0, 0, 5, 12, 12, 14};  // lengths 0, 5, 7, 0, 2
    Problem p(d);
    const Mask masks[] = {Mask::none(), Mask::band(true, 2), Mask::band(true, 1, {}, 1)};
    for (const Mask& mask : masks) {
        p.poison();
        ForwardArgs fa = p.forward_args();
        fa.mask = mask;
        Status s = ccattn::forward(fa);
        ASSERT_TRUE(s.ok()) << s.to_string();
        BackwardArgs ba = p.backward_args();
        ba.mask = mask;
        s = ccattn::backward(ba);
        ASSERT_TRUE(s.ok()) << s.to_string();

        core::AttnParams params;
        ASSERT_TRUE(api::fill_backward_params(ba, {}, params).ok());
        cpu::Reference ref = cpu::reference_forward(params);
        cpu::reference_backward(params, ref);
        const int hq = d.heads_q;
        for (std::int64_t row = 0; row < 13; ++row)
            for (int h = 0; h < hq; ++h) {
                const double want = ref.lse[std::size_t(row * hq + h)];
                const float got = p.lse_at(std::size_t(h * 13 + row));
                if (std::isinf(want)) {
                    ASSERT_TRUE(std::isinf(got) && got < 0) << "row " << row;
                    for (int e = 0; e < d.dim_v; ++e)
                        ASSERT_EQ(p.out_at(std::size_t((row * hq + h) * d.dim_v + e)), 0.f);
                } else {
                    ASSERT_NEAR(got, want, 1e-3 * (1 + std::fabs(want))) << "row " << row;
                }
                for (int e = 0; e < d.dim_v; ++e) {
                    const std::size_t x = std::size_t((row * hq + h) * d.dim_v + e);
                    ASSERT_NEAR(p.out_at(x), ref.out[x], 2e-2) << "row " << row;
                }
            }
        // Sequence 0 has no keys: its dq rows are zero; sequence 1 has no queries: its dk, dv are zero.
        for (std::size_t x = 0; x < std::size_t(3 * hq * d.dim_qk); ++x) ASSERT_EQ(p.dq_at(x), 0.f);
        for (std::size_t x = 0; x < std::size_t(5 * d.heads_kv * d.dim_qk); ++x) ASSERT_EQ(p.dk_at(x), 0.f);
        for (std::size_t x = 0; x < std::size_t(5 * d.heads_kv * d.dim_v); ++x) ASSERT_EQ(p.dv_at(x), 0.f);
        for (std::size_t x = 0; x < ref.dk.size(); ++x) ASSERT_NEAR(p.dk_at(x), ref.dk[x], 5e-2) << x;
        for (std::size_t x = 0; x < ref.dv.size(); ++x) ASSERT_NEAR(p.dv_at(x), ref.dv[x], 5e-2) << x;
        for (std::size_t x = 0; x < ref.dq.size(); ++x) ASSERT_NEAR(p.dq_at(x), ref.dq[x], 5e-2) << x;
    }
}

// Unchecked device cu_seqlens are never read on the host: validation takes the caller's bounds
// (capped at the row counts) as the longest sequences. Here the "device" offsets point at memory the
// host must not touch.
TEST(ApiEdgeCases, UncheckedDeviceCuSeqlensAreNotRead) {
    Dims d;
    d.cu_q = {0, 4, 10};
    d.cu_k = {0, 9, 14};
    Problem p(d);
    ForwardArgs a = p.forward_args();
    for (Tensor* t : {&a.q, &a.k, &a.v, &a.out, &a.lse, &a.cu_seqlens_q, &a.cu_seqlens_k}) t->device = Device::cuda;
    a.cu_seqlens_q.data = a.cu_seqlens_k.data = reinterpret_cast<void*>(std::uintptr_t(64));
    a.varlen.check_cu_seqlens = false;
    a.varlen.max_seqlen_q = 6;
    a.varlen.max_seqlen_k = 100;
    core::AttnParams params;
    const Status s = api::fill_forward_params(a, {}, params);
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_EQ(params.seqlen_q, 6);
    EXPECT_EQ(params.seqlen_k, 14);  // no sequence is longer than all keys
    // Through the public call (no device here) the same arguments copy nothing and reach the backend.
    if (!ccattn::cuda_available()) {
        a.backend = Backend::automatic;
        EXPECT_EQ(int(ccattn::forward(a).code), int(Code::backend_unavailable));
    }
}

// Given bounds on checked cu_seqlens: accepted when they hold, the longest sequences are used.
TEST(ApiEdgeCases, MaxSeqlenBoundsOnCheckedCuSeqlens) {
    Dims d;
    d.cu_q = {0, 4, 10};
    d.cu_k = {0, 9, 14};
    Problem p(d);
    ForwardArgs a = p.forward_args();
    a.varlen.max_seqlen_q = 60;
    a.varlen.max_seqlen_k = 9;
    core::AttnParams params;
    ASSERT_TRUE(api::fill_forward_params(a, {}, params).ok());
    EXPECT_EQ(params.seqlen_q, 6);
    EXPECT_EQ(params.seqlen_k, 9);
    a.varlen.check_cu_seqlens = false;  // host offsets are checked all the same
    ASSERT_TRUE(ccattn::forward(a).ok());
}

// Tile indices are checked against the longest sequence, so a list may name a kv tile past a
// shorter sequence's end, even as a full tile: only that sequence's keys may be read.
TEST(ApiEdgeCases, BlockSparseTilesPastAShortSequence) {
    Dims d;
    d.cu_q = {0, 4, 10};
    d.cu_k = {0, 9, 11};  // 9 keys, then 2: kv tiles of 3 number 3 for the longest
    Problem p(d);
    std::vector<std::int32_t> full_count(2 * 3, 3), full_index, partial_count(2 * 3, 0), partial_index(2 * 3, 0);
    for (int e = 0; e < 2 * 3; ++e)
        for (int t = 0; t < 3; ++t) full_index.push_back(t);
    Mask m;
    m.kind = MaskKind::block_sparse;
    m.block_sparse.tile_m = 2;
    m.block_sparse.tile_n = 3;
    m.block_sparse.full_count = Tensor::contiguous(full_count.data(), DType::int32, {2, 1, 3});
    m.block_sparse.full_index = Tensor::contiguous(full_index.data(), DType::int32, {2, 1, 3, 3});
    m.block_sparse.partial_count = Tensor::contiguous(partial_count.data(), DType::int32, {2, 1, 3});
    m.block_sparse.partial_index = Tensor::contiguous(partial_index.data(), DType::int32, {2, 1, 3, 1});
    m.block_sparse.mask_mod = [](int, int, std::int64_t, std::int64_t) { return true; };
    ForwardArgs fa = p.forward_args();
    fa.mask = m;
    Status s = ccattn::forward(fa);
    ASSERT_TRUE(s.ok()) << s.to_string();
    BackwardArgs ba = p.backward_args();
    ba.mask = m;
    s = ccattn::backward(ba);
    ASSERT_TRUE(s.ok()) << s.to_string();

    core::AttnParams params;
    ASSERT_TRUE(api::fill_backward_params(ba, {}, params).ok());
    params.host_mask = &m;
    cpu::Reference ref = cpu::reference_forward(params);
    cpu::reference_backward(params, ref);
    for (std::size_t x = 0; x < ref.out.size(); ++x) ASSERT_NEAR(p.out_at(x), ref.out[x], 2e-2) << x;
    for (std::size_t x = 0; x < ref.dq.size(); ++x) ASSERT_NEAR(p.dq_at(x), ref.dq[x], 5e-2) << x;
    for (std::size_t x = 0; x < ref.dk.size(); ++x) ASSERT_NEAR(p.dk_at(x), ref.dk[x], 5e-2) << x;
    for (std::size_t x = 0; x < ref.dv.size(); ++x) ASSERT_NEAR(p.dv_at(x), ref.dv[x], 5e-2) << x;
}

}  // namespace
}  // namespace ccattn::test
