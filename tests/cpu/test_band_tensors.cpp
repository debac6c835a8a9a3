// Band tensors (Mask::band_tensors) on the CPU backend: random monotone bands against the fp64
// reference, and tensors describing the built-in band equal to it (and to the custom band) bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/band.h"
#include "edge_rows.h"
#include "problem.h"

namespace ccattn::test {
namespace {

// Edge values for every query row of a problem, held as int32 or int64 [B, Sq] or [Tq].
struct Edges {
    std::vector<std::int64_t> lo, hi;
    std::vector<std::int64_t> lo64, hi64;
    std::vector<std::int32_t> lo32, hi32;

    Mask mask(const Problem& pr, DType dtype) {
        const bool vl = pr.cfg.varlen();
        auto view = [&](std::vector<std::int64_t>& src, std::vector<std::int64_t>& w, std::vector<std::int32_t>& n) {
            w = src;
            n.assign(src.begin(), src.end());
            void* data = dtype == DType::int64 ? static_cast<void*>(w.data()) : static_cast<void*>(n.data());
            return vl ? Tensor::contiguous(data, dtype, {std::int64_t(src.size())})
                      : Tensor::contiguous(data, dtype, {pr.batch, pr.cfg.seqlen_q});
        };
        const Tensor l = view(lo, lo64, lo32), h = view(hi, hi64, hi32);
        return Mask::band_tensors(l, h);
    }
};

std::int64_t seqlen(const Problem& pr, int b, bool keys) {
    if (!pr.cfg.varlen()) return keys ? pr.cfg.seqlen_k : pr.cfg.seqlen_q;
    return (keys ? pr.cfg.lens_k : pr.cfg.lens_q)[std::size_t(b)];
}

SequenceLengths lengths(const Problem& pr) {
    SequenceLengths seqs;
    for (int b = 0; b < pr.batch; ++b) seqs.push_back({seqlen(pr, b, false), seqlen(pr, b, true)});
    return seqs;
}

Edges edges_of(const Problem& pr, const Mask& band) {
    const EdgeRows r = builtin_edge_rows(lengths(pr), band);
    Edges e;
    e.lo = r.lo;
    e.hi = r.hi;
    return e;
}

Edges random_edges(const Problem& pr, std::uint64_t seed) {
    const EdgeRows r = random_edge_rows(lengths(pr), seed);
    Edges e;
    e.lo = r.lo;
    e.hi = r.hi;
    return e;
}

Config varlen(std::vector<std::int32_t> lq, std::vector<std::int32_t> lk, int hq, int hkv, int d, DType t,
              std::uint64_t seed) {
    Config c = make_config(0, 0, hq, hkv, d, t, seed);
    c.lens_q = std::move(lq);
    c.lens_k = std::move(lk);
    return c;
}

struct Case {
    std::string name;
    Config cfg;
    friend void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }
};

std::vector<Case> cases() {
    return {
        {"odd_fixed_gqa", make_config(301, 227, 4, 2, 64, DType::bf16, 1)},
        {"batch2_fp16", [] { Config c = make_config(131, 389, 2, 1, 32, DType::fp16, 2); c.batch = 2; return c; }()},
        {"strided", [] { Config c = make_config(97, 150, 3, 3, 48, DType::bf16, 3); c.strided = true; return c; }()},
        {"varlen_gqa", varlen({77, 0, 260, 1}, {190, 5, 133, 300}, 4, 1, 64, DType::bf16, 4)},
        {"one_row", make_config(1, 70, 2, 2, 16, DType::fp16, 5)},
    };
}

class BandTensors : public ::testing::TestWithParam<Case> {};

TEST_P(BandTensors, RandomMonotoneBandsMatchReference) {
    for (std::uint64_t seed : {11u, 12u, 13u, 14u}) {
        for (DType dtype : {DType::int32, DType::int64}) {
            SCOPED_TRACE("seed " + std::to_string(seed) + (dtype == DType::int32 ? " int32" : " int64"));
            Problem pr(GetParam().cfg);
            Edges e = random_edges(pr, seed);
            const Mask m = e.mask(pr, dtype);
            run(pr, m);
            if (HasFatalFailure()) return;
            const core::AttnParams p = pr.params(m);
            cpu::Reference ref = cpu::reference_forward(p);
            cpu::reference_backward(p, ref);
            expect_forward_matches(pr, ref);
            expect_backward_matches(pr, ref);
        }
    }
}

TEST_P(BandTensors, BuiltInBandIsReproducedBitForBit) {
    struct Band {
        bool causal;
        std::int64_t cf;
        std::optional<std::int64_t> delta, window;
    };
    for (const Band& b : {Band{true, 1, {}, {}}, Band{true, 4, 0, {}}, Band{true, 3, -5, 20}, Band{false, 1, {}, 70},
                          Band{true, 2, 150, 9}}) {
        SCOPED_TRACE("band cf " + std::to_string(b.cf));
        Problem pr(GetParam().cfg);
        const Mask band = Mask::band(b.causal, b.cf, b.delta, b.window);
        const Outputs native = run(pr, band);
        if (HasFatalFailure()) return;
        Edges e = edges_of(pr, band);
        expect_same_bits(run(pr, e.mask(pr, DType::int64)), native, "band tensors (int64)");
        expect_same_bits(run(pr, e.mask(pr, DType::int32)), native, "band tensors (int32)");
    }
}

TEST_P(BandTensors, AgreeWithTheCustomBand) {
    Problem pr(GetParam().cfg);
    Edges e = random_edges(pr, 21);
    Mask custom;
    custom.kind = MaskKind::custom_band;
    // Edges of sequence b start at the sum of the earlier sequences' query lengths.
    std::vector<std::int64_t> start{0};
    for (int b = 0; b < pr.batch; ++b) start.push_back(start.back() + seqlen(pr, b, false));
    custom.custom_band.lo = [&](int b, std::int64_t i) { return e.lo[std::size_t(start[std::size_t(b)] + i)]; };
    custom.custom_band.hi = [&](int b, std::int64_t i) { return e.hi[std::size_t(start[std::size_t(b)] + i)]; };
    const Outputs expected = run(pr, custom);
    if (HasFatalFailure()) return;
    expect_same_bits(run(pr, e.mask(pr, DType::int64)), expected, "band tensors vs custom band");
}

INSTANTIATE_TEST_SUITE_P(Cpu, BandTensors, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// Rows that see nothing give out 0 and lse -inf; rows that see every key the unmasked result.
TEST(BandTensorRows, EmptyAndFullRows) {
    Problem pr(make_config(40, 30, 2, 1, 32, DType::bf16, 9));
    // Rows 0-19: lo = hi = i - 21 (negative, so empty); rows 20-39: lo -100, hi 1000. Raw lo falls at
    // row 20, but clamped to [0, Sk] both edges are monotone, which is all the definition asks.
    Edges e;
    for (std::int64_t i = 0; i < 40; ++i) {
        e.lo.push_back(i < 20 ? i - 21 : -100);
        e.hi.push_back(i < 20 ? i - 21 : 1000);
    }
    const Mask m = e.mask(pr, DType::int64);
    run(pr, m);
    ASSERT_FALSE(HasFatalFailure());
    for (std::int64_t i = 0; i < 20; ++i)
        for (int h = 0; h < 2; ++h) {
            EXPECT_EQ(pr.lse_at(i, h), -std::numeric_limits<double>::infinity());
            EXPECT_EQ(pr.out.at(i, h, 0), 0.0);
        }
    Problem full(make_config(40, 30, 2, 1, 32, DType::bf16, 9));
    const Outputs unmasked = run(full, Mask::none());
    for (std::int64_t i = 20; i < 40; ++i)
        for (int e2 = 0; e2 < 32; ++e2) EXPECT_EQ(pr.out.at(i, 0, e2), unmasked.out.at(i, 0, e2));
}

}  // namespace
}  // namespace ccattn::test
