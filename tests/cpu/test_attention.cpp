// CPU forward and backward against the fp64 reference over odd shapes, masks, GQA groups, head
// dims, dtypes, strides and varlen.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "problem.h"

namespace ccattn::test {
namespace {

struct Case {
    std::string name;
    Config cfg;
    Mask mask;
    std::optional<float> scale;
    friend void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }
};

Config fixed(int b, std::int64_t sq, std::int64_t sk, int hq, int hkv, int dqk, int dv, DType t, bool strided,
             std::uint64_t seed) {
    Config c;
    c.batch = b;
    c.seqlen_q = sq;
    c.seqlen_k = sk;
    c.heads_q = hq;
    c.heads_kv = hkv;
    c.dim_qk = dqk;
    c.dim_v = dv;
    c.dtype = t;
    c.strided = strided;
    c.seed = seed;
    return c;
}

Config varlen(std::vector<std::int32_t> lq, std::vector<std::int32_t> lk, int hq, int hkv, int dqk, int dv, DType t,
              bool strided, std::uint64_t seed) {
    Config c = fixed(1, 0, 0, hq, hkv, dqk, dv, t, strided, seed);
    c.lens_q = std::move(lq);
    c.lens_k = std::move(lk);
    return c;
}

constexpr DType bf16 = DType::bf16;
constexpr DType fp16 = DType::fp16;

std::vector<Case> cases() {
    return {
        {"single", fixed(1, 1, 1, 1, 1, 64, 64, bf16, false, 11), Mask::band(true)},
        {"seven_cf3_gqa2_d48x32", fixed(2, 7, 3, 2, 1, 48, 32, fp16, false, 12), Mask::band(true, 3)},
        {"cf4_not_dividing_gqa4", fixed(1, 113, 29, 4, 1, 64, 64, bf16, false, 13), Mask::band(true, 4)},
        {"causal_gqa3_d96x64_strided", fixed(1, 203, 203, 6, 2, 96, 64, fp16, true, 14), Mask::band(true)},
        {"nsa_window_gqa8", fixed(1, 203, 51, 8, 1, 32, 32, bf16, false, 15), Mask::band(true, 4, -3, 5)},
        {"positive_delta_gqa16", fixed(1, 150, 40, 16, 1, 16, 16, bf16, false, 16), Mask::band(true, 4, 37)},
        {"nsa_gqa32", fixed(1, 97, 5, 32, 1, 16, 16, fp16, false, 35), Mask::band(true, 16, -31)},
        {"causal_gqa64_two_kv_heads", fixed(1, 41, 41, 128, 2, 16, 16, bf16, true, 36), Mask::band(true)},
        {"empty_rows", fixed(2, 113, 57, 2, 2, 64, 64, fp16, false, 17), Mask::band(true, 2, -100)},
        {"all_rows_empty", fixed(1, 30, 20, 2, 1, 32, 32, bf16, false, 18), Mask::band(true, 1, -40)},
        {"no_mask_gqa2", fixed(1, 77, 130, 4, 2, 64, 48, bf16, true, 19), Mask::none()},
        {"window_only", fixed(1, 90, 90, 1, 1, 32, 32, fp16, false, 20), Mask::band(false, 1, std::nullopt, 10)},
        {"bottom_right_sq_gt_sk", fixed(1, 100, 37, 3, 3, 32, 32, bf16, false, 21), Mask::band(true)},
        {"bottom_right_sq_lt_sk", fixed(1, 37, 100, 2, 1, 32, 32, bf16, false, 22), Mask::band(true)},
        {"d128_long_kv", fixed(1, 130, 300, 2, 1, 128, 128, bf16, false, 23), Mask::band(true, 2)},
        {"d512", fixed(1, 9, 20, 1, 1, 512, 512, fp16, false, 24), Mask::band(true, 2)},
        {"no_keys", fixed(2, 20, 0, 2, 1, 32, 32, bf16, true, 33), Mask::band(true, 2)},
        {"no_queries", fixed(1, 0, 20, 2, 2, 32, 16, fp16, false, 34), Mask::none()},
        {"d1", fixed(1, 33, 33, 2, 1, 1, 1, bf16, false, 25), Mask::band(true)},
        {"varlen_empty_sequences", varlen({0, 70, 1, 130, 5, 9}, {3, 20, 0, 33, 9, 0}, 4, 2, 64, 64, fp16, true, 26),
         Mask::band(true, 4)},
        {"varlen_bottom_right", varlen({17, 64, 65, 3}, {40, 64, 7, 100}, 3, 1, 32, 48, bf16, false, 27), Mask::band(true)},
        {"varlen_window", varlen({200, 1}, {60, 0}, 2, 2, 64, 32, bf16, false, 28), Mask::band(true, 3, -2, 4)},
        {"many_tiles", fixed(1, 640, 640, 4, 2, 64, 64, bf16, false, 30), Mask::band(true)},
        {"scale", fixed(1, 65, 65, 2, 2, 64, 64, bf16, false, 29), Mask::band(true, 1, 0), 0.3f},
    };
}

class Attention : public ::testing::TestWithParam<Case> {};

TEST_P(Attention, ForwardAndBackwardMatchReference) {
    const Case& c = GetParam();
    Problem pr(c.cfg);
    pr.scale = c.scale;
    pr.run_forward(c.mask);
    if (HasFatalFailure()) return;
    const core::AttnParams p = pr.params(c.mask);
    cpu::Reference ref = cpu::reference_forward(p);
    expect_forward_matches(pr, ref);
    pr.run_backward(c.mask);
    if (HasFatalFailure()) return;
    cpu::reference_backward(p, ref);
    expect_backward_matches(pr, ref);
}

INSTANTIATE_TEST_SUITE_P(Cpu, Attention, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

// Results do not depend on the number of threads (work items are independent, no atomics).
TEST(Attention, DeterministicAcrossThreadCounts) {
    Problem pr(fixed(2, 150, 80, 4, 2, 64, 32, bf16, false, 31));
    const Mask mask = Mask::band(true, 2, 3);
    pr.num_threads = 1;
    pr.run_forward(mask);
    pr.run_backward(mask);
    const Problem one = pr;
    for (int threads : {2, 3, 0, 64}) {
        pr.num_threads = threads;
        pr.run_forward(mask);
        pr.run_backward(mask);
        EXPECT_TRUE(same_bits(pr.out, one.out)) << threads;
        EXPECT_EQ(0, std::memcmp(pr.lse.data(), one.lse.data(), pr.lse.size() * sizeof(float))) << threads;
        EXPECT_TRUE(same_bits(pr.dq, one.dq)) << threads;
        EXPECT_TRUE(same_bits(pr.dk, one.dk)) << threads;
        EXPECT_TRUE(same_bits(pr.dv, one.dv)) << threads;
    }
}

// BackwardArgs::deterministic is accepted and changes no bit on the CPU backend, whose backward adds in
// a fixed order anyway.
TEST(Attention, DeterministicOptionChangesNothingOnCpu) {
    Problem pr(fixed(2, 150, 80, 4, 2, 64, 32, bf16, false, 33));
    const Mask mask = Mask::band(true, 2, 3);
    pr.run_forward(mask);
    pr.run_backward(mask);
    const Problem plain = pr;
    for (Buffer* b : {&pr.dq, &pr.dk, &pr.dv}) b->poison();
    BackwardArgs a = pr.backward_args(mask);
    a.deterministic = true;
    ASSERT_TRUE(ccattn::backward(a).ok());
    EXPECT_TRUE(same_bits(pr.dq, plain.dq));
    EXPECT_TRUE(same_bits(pr.dk, plain.dk));
    EXPECT_TRUE(same_bits(pr.dv, plain.dv));
}

// lse is optional in the forward.
TEST(Attention, ForwardWithoutLse) {
    Problem pr(fixed(1, 70, 70, 2, 1, 32, 32, bf16, false, 32));
    const Mask mask = Mask::band(true);
    pr.out.poison();
    ForwardArgs a = pr.forward_args(mask);
    a.lse = {};
    ASSERT_TRUE(ccattn::forward(a).ok());
    ASSERT_TRUE(pr.out.written_exactly());
    expect_close(pr.out, cpu::reference_forward(pr.params(mask)).out, "out");
}

}  // namespace
}  // namespace ccattn::test
