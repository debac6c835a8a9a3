// The mask mechanisms agree with each other and with the conventions of docs/semantics.md, and
// nothing leaks across the mask.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "ccattn/block_sparse.h"
#include "core/band.h"
#include "core/bound_bands.h"
#include "core/literal_band.h"
#include "literal_rule.h"
#include "problem.h"

namespace ccattn::test {
namespace {

// Sequence lengths of a problem, for callables that need them per b.
std::vector<std::int64_t> lengths(const Problem& pr, bool keys) {
    std::vector<std::int64_t> len;
    for (int b = 0; b < pr.batch; ++b)
        len.push_back(pr.cfg.varlen() ? (keys ? pr.cfg.lens_k : pr.cfg.lens_q)[std::size_t(b)]
                                      : (keys ? pr.cfg.seqlen_k : pr.cfg.seqlen_q));
    return len;
}

// A causal band with an explicit offset, as mask_mod (literal rule) and as custom band.
Mask literal_mask_mod(const Problem& pr, LiteralRule rule) {
    Mask m;
    m.kind = MaskKind::mask_mod;
    m.mask_mod = [rule, sk = lengths(pr, true)](int b, int, std::int64_t i, std::int64_t j) {
        return j < sk[std::size_t(b)] && rule(i, j);
    };
    return m;
}
Mask custom_band(LiteralRule rule) {
    Mask m;
    m.kind = MaskKind::custom_band;
    m.custom_band.lo = [rule](int, std::int64_t i) {
        return rule.window ? core::floor_div(i + rule.delta, rule.cf) - *rule.window : std::int64_t(0);
    };
    m.custom_band.hi = [rule](int, std::int64_t i) { return core::floor_div(i + rule.delta, rule.cf) + 1; };
    return m;
}

// ---- the three mechanisms and the custom band on the same band ----

struct AgreeCase {
    std::string name;
    Config cfg;
    LiteralRule rule;
    friend void PrintTo(const AgreeCase& c, std::ostream* os) { *os << c.name; }
};

class Mechanisms : public ::testing::TestWithParam<AgreeCase> {};

TEST_P(Mechanisms, AgreeOnTheSameBand) {
    const AgreeCase& c = GetParam();
    Problem pr(c.cfg);
    const Mask band = Mask::band(true, c.rule.cf, c.rule.delta, c.rule.window);
    const Outputs native = run(pr, band);
    if (HasFatalFailure()) return;

    // Same tile path: bit for bit. mask_mod visits extra tiles, but fully masked ones add exact zeros.
    expect_same_bits(run(pr, custom_band(c.rule)), native, "custom band");
    expect_same_bits(run(pr, literal_mask_mod(pr, c.rule)), native, "mask_mod");

    // Block-sparse visits full tiles before partial ones: the same sums in another order.
    const core::AttnParams p = pr.params(band);
    cpu::Reference ref = cpu::reference_forward(p);
    cpu::reference_backward(p, ref);
    BlockSparseLists::Shape shape;
    shape.batch = pr.batch;
    shape.seqlen_q = c.cfg.seqlen_q;
    shape.seqlen_k = c.cfg.seqlen_k;
    if (c.cfg.varlen()) {
        shape.cu_seqlens_q = pr.cu_q.data();
        shape.cu_seqlens_k = pr.cu_k.data();
    }
    for (auto [tm, tn] : {std::pair{64, 64}, {48, 80}, {128, 32}, {7, 13}, {1, 200}}) {
        SCOPED_TRACE("block-sparse " + std::to_string(tm) + "x" + std::to_string(tn));
        shape.tile_m = tm;
        shape.tile_n = tn;
        BlockSparseLists lists;
        ASSERT_TRUE(BlockSparseLists::from_band(band, shape, lists).ok());
        run(pr, lists.mask());
        expect_forward_matches(pr, ref);
        expect_backward_matches(pr, ref);
    }
}

Config varlen_config(std::vector<std::int32_t> lq, std::vector<std::int32_t> lk, int hq, int hkv, int d, DType t,
                     std::uint64_t seed) {
    Config c = make_config(0, 0, hq, hkv, d, t, seed);
    c.lens_q = std::move(lq);
    c.lens_k = std::move(lk);
    return c;
}

// Gaps after every head, row and batch (and in lse): callable masks compute into dense scratch
// first, which must land exactly in the views.
Config strided(Config c, int batch = 1) {
    c.strided = true;
    c.batch = batch;
    return c;
}

INSTANTIATE_TEST_SUITE_P(
    Cpu, Mechanisms,
    ::testing::Values(AgreeCase{"nsa_window_gqa2", make_config(203, 51, 4, 2, 64, DType::bf16, 41), {4, -3, 6}},
                      AgreeCase{"varlen_cf3_gqa3", varlen_config({70, 0, 131}, {24, 5, 44}, 3, 1, 32, DType::fp16, 42),
                                {3, 0, std::nullopt}},
                      AgreeCase{"cf1_window_offset", make_config(100, 130, 2, 2, 48, DType::bf16, 43), {1, 30, 17}},
                      AgreeCase{"empty_rows", make_config(150, 40, 2, 1, 32, DType::fp16, 44), {2, -70, std::nullopt}},
                      AgreeCase{"strided_gqa2", strided(make_config(130, 70, 4, 2, 32, DType::bf16, 46), 2), {2, -1, 9}},
                      AgreeCase{"strided_varlen", strided(varlen_config({70, 0, 131}, {24, 5, 44}, 2, 1, 32, DType::fp16, 47)),
                                {3, 0, std::nullopt}}),
    [](const ::testing::TestParamInfo<AgreeCase>& i) { return i.param.name; });

// ---- the largest cf, window and offsets validation accepts ----

// The native band (core's floor divisions, the tile schedule) gives the bits of the literal rule
// (products, no division) evaluated per element, forward and backward.
TEST(MechanismsAtTheBounds, NativeBandEqualsTheLiteralRule) {
    for (const BoundBand& b : bands_at_validation_bounds()) {
        SCOPED_TRACE(::testing::Message() << "cf=" << b.cf << " delta=" << b.delta << " causal=" << b.causal
                                          << " window=" << b.window.value_or(-1));
        Problem pr(make_config(203, 113, 4, 2, 32, DType::bf16, 45));
        Mask literal;
        literal.kind = MaskKind::mask_mod;
        literal.mask_mod = [rule = LiteralBand{113, b.causal, b.cf, b.delta, b.window}](int, int, std::int64_t i,
                                                                                     std::int64_t j) {
            return rule.visible(i, j);
        };
        const Outputs want = run(pr, literal);
        expect_same_bits(run(pr, Mask::band(b.causal, b.cf, b.delta, b.window)), want, "native band");
    }
}

// ---- the conventions of docs/semantics.md as (cf, delta) equal their literal rule ----

struct Convention {
    std::string name;
    std::int64_t sq, sk;
    Mask band;  // the (cf, delta) form
    std::function<bool(std::int64_t i, std::int64_t j)> rule;  // the literal rule
    friend void PrintTo(const Convention& c, std::ostream* os) { *os << c.name; }
};

std::vector<Convention> conventions() {
    const std::int64_t cf = 4, l = 7, d = 3, B = 4, p = 37;
    return {
        {"seed_default_delta", 97, 25, Mask::band(true, cf), [=](auto i, auto j) { return j * cf <= i; }},
        {"seed_explicit_delta", 97, 25, Mask::band(true, cf, 0), [=](auto i, auto j) { return j * cf <= i; }},
        {"nsa_l7_d3", 97, 33, Mask::band(true, d, -(l - 1)), [=](auto i, auto j) { return j * d + l - 1 <= i; }},
        {"nsa_l8_d4", 97, 25, Mask::band(true, 4, -7), [=](auto i, auto j) { return j * 4 + 8 - 1 <= i; }},
        {"fla_blocks_4", 97, 25, Mask::band(true, B, -(B - 1)), [=](auto i, auto j) { return (j + 1) * B - 1 <= i; }},
        {"causal_bottom_right_sq_lt_sk", 50, 80, Mask::band(true), [](auto i, auto j) { return j <= i + 80 - 50; }},
        {"causal_bottom_right_sq_gt_sk", 80, 50, Mask::band(true), [](auto i, auto j) { return j <= i + 50 - 80; }},
        {"chunked_prefill_seed", 60, 25, Mask::band(true, cf, p), [=](auto i, auto j) { return j * cf <= i + p; }},
        {"chunked_prefill_nsa", 60, 33, Mask::band(true, d, p - (l - 1)),
         [=](auto i, auto j) { return j * d + l - 1 <= i + p; }},
    };
}

class Conventions : public ::testing::TestWithParam<Convention> {};

TEST_P(Conventions, BandEqualsLiteralRule) {
    const Convention& c = GetParam();
    Problem pr(make_config(c.sq, c.sk, 4, 2, 32, DType::bf16, 50 + std::uint64_t(c.sq + c.sk)));
    Mask literal;
    literal.kind = MaskKind::mask_mod;
    literal.mask_mod = [rule = c.rule](int, int, std::int64_t i, std::int64_t j) { return rule(i, j); };

    const core::AttnParams p = pr.params(c.band);
    for (std::int64_t i = 0; i < c.sq; ++i)
        for (std::int64_t j = 0; j < c.sk; ++j)
            ASSERT_EQ(cpu::reference_visible(p, 0, 0, i, j), c.rule(i, j)) << "i " << i << " j " << j;

    const Outputs band = run(pr, c.band);
    if (HasFatalFailure()) return;
    expect_same_bits(run(pr, literal), band, c.name);
}

INSTANTIATE_TEST_SUITE_P(Cpu, Conventions, ::testing::ValuesIn(conventions()),
                         [](const ::testing::TestParamInfo<Convention>& i) { return i.param.name; });

// ---- masks that are not bands: per-head predicates, block-sparse from a predicate, custom bands ----

TEST(Mechanisms, PerHeadPredicateMatchesReference) {
    Problem pr(make_config(90, 70, 4, 2, 32, DType::bf16, 60));
    Mask m;
    m.kind = MaskKind::mask_mod;
    m.mask_mod = [](int, int h, std::int64_t i, std::int64_t j) { return (i + 2 * j + h) % 3 != 0 && j <= i + h; };
    run(pr, m);
    const core::AttnParams p = pr.params(m);
    cpu::Reference ref = cpu::reference_forward(p);
    cpu::reference_backward(p, ref);
    expect_forward_matches(pr, ref);
    expect_backward_matches(pr, ref);

    // The same predicate as per-head block-sparse lists: the same result up to summation order.
    BlockSparseLists::Shape shape;
    shape.seqlen_q = 90;
    shape.seqlen_k = 70;
    shape.tile_m = 16;
    shape.tile_n = 24;
    BlockSparseLists lists;
    ASSERT_TRUE(BlockSparseLists::from_predicate(m.mask_mod, 4, shape, lists).ok());
    run(pr, lists.mask());
    expect_forward_matches(pr, ref);
    expect_backward_matches(pr, ref);
}

TEST(Mechanisms, CustomBandMatchesReference) {
    Problem pr(make_config(150, 90, 2, 1, 64, DType::fp16, 61));
    Mask m;
    m.kind = MaskKind::custom_band;
    m.custom_band.lo = [](int, std::int64_t i) { return i / 3 - 10; };  // clamped to 0 by the library
    m.custom_band.hi = [](int, std::int64_t i) { return i / 2 + 5 + (i > 100 ? 40 : 0); };
    run(pr, m);
    const core::AttnParams p = pr.params(m);
    cpu::Reference ref = cpu::reference_forward(p);
    cpu::reference_backward(p, ref);
    expect_forward_matches(pr, ref);
    expect_backward_matches(pr, ref);
}

// ---- leaks: keys a row cannot see never change it ----

class Leak : public ::testing::TestWithParam<std::string> {};

TEST_P(Leak, HiddenKeysNeverChangeARow) {
    const LiteralRule rule{4, -3, 8};
    Problem pr(make_config(203, 60, 4, 2, 32, DType::bf16, 70));
    Mask mask = Mask::band(true, rule.cf, rule.delta, rule.window);
    BlockSparseLists lists;
    if (GetParam() == "mask_mod") mask = literal_mask_mod(pr, rule);
    if (GetParam() == "custom_band") mask = custom_band(rule);
    if (GetParam() == "block_sparse") {
        BlockSparseLists::Shape shape;
        shape.seqlen_q = 203;
        shape.seqlen_k = 60;
        shape.tile_m = 48;
        shape.tile_n = 80;
        ASSERT_TRUE(BlockSparseLists::from_band(mask, shape, lists).ok());
        mask = lists.mask();
    }
    const Outputs before = run(pr, mask);
    if (HasFatalFailure()) return;

    // Keys no row sees have exactly zero gradients.
    const core::AttnParams p = pr.params(mask);
    std::vector<bool> seen(60, false);
    for (std::int64_t i = 0; i < 203; ++i)
        for (std::int64_t j = 0; j < 60; ++j) seen[std::size_t(j)] = seen[std::size_t(j)] || rule(i, j);
    int unseen = 0;
    for (std::int64_t j = 0; j < 60; ++j)
        if (!seen[std::size_t(j)]) {
            ++unseen;
            for (int hk = 0; hk < pr.cfg.heads_kv; ++hk)
                for (int e = 0; e < 32; ++e) {
                    ASSERT_EQ(pr.dk.at(j, hk, e), 0.0) << "key " << j;
                    ASSERT_EQ(pr.dv.at(j, hk, e), 0.0) << "key " << j;
                }
        }
    EXPECT_GT(unseen, 0);  // the band leaves the last keys unseen (delta < 0)

    // Perturb the first 10 and the last 20 keys: rows seeing none of them must not move a bit.
    auto hidden = [](std::int64_t j) { return j < 10 || j >= 40; };
    for (std::int64_t j = 0; j < 60; ++j)
        if (hidden(j))
            for (int hk = 0; hk < pr.cfg.heads_kv; ++hk)
                for (int e = 0; e < 32; ++e) {
                    pr.k.set(j, hk, e, 900.f - 37.f * float(e));
                    pr.v.set(j, hk, e, -700.f + 53.f * float(e));
                }
    const Outputs after = run(pr, mask);
    if (HasFatalFailure()) return;
    int clean_rows = 0;
    for (std::int64_t i = 0; i < 203; ++i) {
        for (int h = 0; h < pr.cfg.heads_q; ++h) {
            bool sees_hidden = false;
            for (std::int64_t j = 0; j < 60; ++j) sees_hidden = sees_hidden || (hidden(j) && cpu::reference_visible(p, 0, h, i, j));
            if (sees_hidden) continue;
            ++clean_rows;
            for (int e = 0; e < 32; ++e) {
                ASSERT_EQ(after.out.data[std::size_t(after.out.offset(i, h, e))],
                          before.out.data[std::size_t(before.out.offset(i, h, e))]) << "row " << i << " head " << h;
                ASSERT_EQ(after.dq.data[std::size_t(after.dq.offset(i, h, e))],
                          before.dq.data[std::size_t(before.dq.offset(i, h, e))]) << "row " << i << " head " << h;
            }
            ASSERT_EQ(0, std::memcmp(&after.lse[pr.lse_index(i, h)], &before.lse[pr.lse_index(i, h)], sizeof(float)))
                << "row " << i << " head " << h;
        }
    }
    EXPECT_GT(clean_rows, 100);
}

INSTANTIATE_TEST_SUITE_P(Cpu, Leak, ::testing::Values("band", "mask_mod", "custom_band", "block_sparse"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace ccattn::test
