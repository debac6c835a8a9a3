// Non-finite inputs (docs/decisions.md 13) on the CPU backend and in the fp64 reference: a NaN or
// +inf score, or only -inf scores, make the row's out and lse NaN; a row the mask leaves empty stays
// empty (out 0, lse -inf) whatever its inputs; a -inf score weighs 0.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include "core/band.h"
#include "problem.h"

namespace ccattn::test {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Two sequences of 150 queries over 100 keys, Hq 2 over Hkv 1: rows 0..19 are empty by the mask
// (causal, cf 2, delta -20: row i sees keys [0, floor((i - 20) / 2) + 1)). Sequence 1 stays clean.
Config two_sequences() {
    Config c;
    c.batch = 2;
    c.seqlen_q = 150;
    c.seqlen_k = 100;
    c.heads_q = 2;
    c.heads_kv = 1;
    c.dim_qk = c.dim_v = 32;
    c.seed = 14;
    return c;
}
const Mask kBand = Mask::band(true, 2, -20);
std::int64_t keys_seen(std::int64_t i) { return core::max(0, core::floor_div(i - 20, 2) + 1); }

Status forward(Problem& pr, const Mask& mask = kBand) {
    pr.out.poison();
    return ccattn::forward(pr.forward_args(mask));
}

bool row_is_nan(const Problem& pr, std::int64_t row, int h) {
    for (int e = 0; e < pr.cfg.dim_v; ++e)
        if (!std::isnan(pr.out.at(row, h, e))) return false;
    return std::isnan(pr.lse_at(row, h));
}
bool row_is_empty(const Problem& pr, std::int64_t row, int h) {
    for (int e = 0; e < pr.cfg.dim_v; ++e)
        if (pr.out.at(row, h, e) != 0.0) return false;
    return std::isinf(pr.lse_at(row, h)) && pr.lse_at(row, h) < 0;
}
bool rows_equal(const Problem& a, const Problem& b, std::int64_t row, int h) {
    for (int e = 0; e < a.cfg.dim_v; ++e)
        if (a.out.data[std::size_t(a.out.offset(row, h, e))] != b.out.data[std::size_t(b.out.offset(row, h, e))])
            return false;
    const float x = float(a.lse_at(row, h)), y = float(b.lse_at(row, h));
    return std::memcmp(&x, &y, 4) == 0;
}

// The reference's verdict on a row: NaN, empty, or finite.
void expect_reference_agrees(const Problem& pr, const Mask& mask) {
    const cpu::Reference ref = cpu::reference_forward(pr.params(mask));
    for (std::int64_t row = 0; row < pr.q.rows(); ++row)
        for (int h = 0; h < pr.cfg.heads_q; ++h) {
            const double want = ref.lse[std::size_t(row * pr.cfg.heads_q + h)], got = pr.lse_at(row, h);
            EXPECT_EQ(std::isnan(want), std::isnan(got)) << "row " << row << " head " << h;
            EXPECT_EQ(std::isinf(want), std::isinf(got)) << "row " << row << " head " << h;
            if (std::isfinite(want)) EXPECT_NEAR(got, want, 1e-3 * (1 + std::fabs(want))) << "row " << row;
            if (std::isnan(want))
                EXPECT_TRUE(std::isnan(ref.out[std::size_t((row * pr.cfg.heads_q + h) * pr.cfg.dim_v)]));
        }
}

TEST(NonFinite, NanAndPlusInfScoresMakeTheRowNan) {
    Problem clean(two_sequences()), pr(two_sequences());
    ASSERT_TRUE(forward(clean).ok());
    pr.q.set(5, 0, 3, kNaN);     // row 5 is empty by the mask: stays empty
    pr.q.set(30, 1, 3, kNaN);    // a NaN in q
    pr.q.set(60, 0, 0, kInf);    // +inf in q: scores of either sign of infinity (or NaN)
    pr.k.set(40, 0, 2, kNaN);    // a NaN in key 40: rows 100.. see it, rows before do not
    ASSERT_TRUE(forward(pr).ok());
    std::set<std::pair<std::int64_t, int>> nan_rows = {{30, 1}, {60, 0}};
    for (std::int64_t i = 100; i < 150; ++i) nan_rows.insert({i, 0}), nan_rows.insert({i, 1});
    for (std::int64_t row = 0; row < 300; ++row)
        for (int h = 0; h < 2; ++h) {
            const std::int64_t i = row % 150;
            if (row < 150 && nan_rows.count({i, h}))
                EXPECT_TRUE(row_is_nan(pr, row, h)) << "row " << row << " head " << h;
            else if (keys_seen(i) == 0)
                EXPECT_TRUE(row_is_empty(pr, row, h)) << "row " << row << " head " << h;
            else
                EXPECT_TRUE(rows_equal(pr, clean, row, h)) << "row " << row << " head " << h << " changed";
        }
    expect_reference_agrees(pr, kBand);

    // The backward of a NaN row: NaN in its dq and in the dk, dv of every key it sees; the clean
    // sequence's gradients are those of the clean run.
    clean.run_backward(kBand);
    for (Buffer* b : {&pr.dq, &pr.dk, &pr.dv}) b->poison();
    ASSERT_TRUE(ccattn::backward(pr.backward_args(kBand)).ok());
    for (const auto& [i, h] : nan_rows) EXPECT_TRUE(std::isnan(pr.dq.at(i, h, 0))) << "dq row " << i;
    for (std::int64_t j = 0; j < keys_seen(149); ++j) {
        EXPECT_TRUE(std::isnan(pr.dk.at(j, 0, 0))) << "dk key " << j;
        EXPECT_TRUE(std::isnan(pr.dv.at(j, 0, 0))) << "dv key " << j;
    }
    for (Buffer Problem::*g : {&Problem::dq, &Problem::dk, &Problem::dv}) {
        const Buffer &got = pr.*g, &want = clean.*g;
        const std::int64_t rows = got.rows() / 2;
        for (std::int64_t r = rows; r < 2 * rows; ++r)
            for (int h = 0; h < got.heads(); ++h)
                for (int e = 0; e < got.dim(); ++e)
                    ASSERT_EQ(got.data[std::size_t(got.offset(r, h, e))], want.data[std::size_t(want.offset(r, h, e))])
                        << "sequence 1, row " << r - rows;
    }
}

TEST(NonFinite, OnlyMinusInfScoresMakeTheRowNanNotEmpty) {
    Problem pr(two_sequences());
    // Every key has a positive first element, so q = (-inf, 0, ..., 0) scores -inf against each.
    for (std::int64_t j = 0; j < pr.k.rows(); ++j) pr.k.set(j, 0, 0, float(std::fabs(pr.k.at(j, 0, 0)) + 1));
    for (std::int64_t i : {10, 90}) {
        for (int e = 0; e < pr.cfg.dim_qk; ++e) pr.q.set(i, 0, e, 0.f);
        pr.q.set(i, 0, 0, -kInf);
    }
    ASSERT_TRUE(forward(pr).ok());
    EXPECT_TRUE(row_is_empty(pr, 10, 0));  // empty by the mask
    EXPECT_TRUE(row_is_nan(pr, 90, 0));    // sees 36 keys, all at -inf
    EXPECT_TRUE(std::isfinite(pr.lse_at(90, 1)));
    EXPECT_TRUE(std::isfinite(pr.lse_at(91, 0)));
    expect_reference_agrees(pr, kBand);
}

// A -inf score removes its key from the softmax like the mask does: the same bits as a mask that
// hides the key.
TEST(NonFinite, MinusInfScoresWeighZero) {
    Problem pr(two_sequences());
    for (std::int64_t r = 0; r < pr.q.rows(); ++r)
        for (int h = 0; h < 2; ++h) pr.q.set(r, h, 1, float(std::fabs(pr.q.at(r, h, 1)) + 0.5));
    pr.k.set(30, 0, 1, -kInf);  // key 30 of sequence 0 scores -inf for every row that sees it (80..)
    ASSERT_TRUE(forward(pr).ok());
    Problem hidden(two_sequences());
    hidden.q = pr.q;
    hidden.k = pr.k;
    hidden.q.t.data = hidden.q.data.data();
    hidden.k.t.data = hidden.k.data.data();
    Mask without_key_30;
    without_key_30.kind = MaskKind::mask_mod;
    without_key_30.mask_mod = [](int b, int, std::int64_t i, std::int64_t j) {
        return j < keys_seen(i) && !(b == 0 && j == 30);
    };
    ASSERT_TRUE(forward(hidden, without_key_30).ok());
    for (std::int64_t row = 0; row < 300; ++row)
        for (int h = 0; h < 2; ++h) EXPECT_TRUE(rows_equal(pr, hidden, row, h)) << "row " << row << " head " << h;
    EXPECT_TRUE(std::isfinite(pr.lse_at(120, 0)));
    expect_reference_agrees(pr, kBand);
}

}  // namespace
}  // namespace ccattn::test
