// attention_with_kvcache on the CPU backend against the fp64 oracle of each sequence's logical keys
// (tests/cpu/kvcache_case.h): decode and short prefill, contiguous and paged caches (pages in random
// order), per-sequence lengths (empty ones included), appended rows, query positions, the band's
// variants and its mask_mod form, every head-dim pair.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "cpu/kvcache_case.h"

namespace ccattn {
namespace {

using test::KvCacheCase;
using test::KvCacheShape;

constexpr double kNormTol = 5e-3, kMaxTol = 1.2e-2;  // bf16 outputs, fp32 accumulation (tests/cpu/problem.h)

void run_case(const KvCacheShape& shape, const Mask& mask) {
    KvCacheCase c(shape);
    const Status s = attention_with_kvcache(c.args(mask));
    ASSERT_TRUE(s.ok()) << s.to_string();
    c.expect_matches(mask, kNormTol, kMaxTol);
    EXPECT_TRUE(c.cache_holds_keys());
}

struct Layout {
    std::int64_t page_size;
    const char* name;
};

class KvCacheCpu : public ::testing::TestWithParam<Layout> {};

TEST_P(KvCacheCpu, DecodeAcrossLengthsAndAppends) {
    for (std::int64_t new_rows : {0, 1, 3}) {
        KvCacheShape s;
        s.batch = 4;
        s.cache_lens = {0, 1, 37, 100 - std::int32_t(new_rows)};  // an empty cache, one row, a ragged page, full
        s.new_rows = new_rows;
        s.capacity = 100;
        s.page_size = GetParam().page_size;
        s.heads_q = 8;
        s.heads_kv = 2;
        s.seed = 10 + std::uint64_t(new_rows);
        SCOPED_TRACE("new_rows " + std::to_string(new_rows));
        run_case(s, Mask::none());
        run_case(s, Mask::band(true));  // bottom-right: every cached key, the appended ones included
    }
}

TEST_P(KvCacheCpu, ShortPrefillWithPositions) {
    for (std::int64_t sq : {2, 17, 64}) {
        KvCacheShape s;
        s.batch = 3;
        s.seqlen_q = sq;
        s.new_rows = sq;  // chunked prefill: the chunk's own keys are appended and attended to
        s.cache_lens = {0, 20, 41};
        s.capacity = 112;
        s.page_size = GetParam().page_size;
        s.seed = 20 + std::uint64_t(sq);
        SCOPED_TRACE("sq " + std::to_string(sq));
        run_case(s, Mask::band(true));
        run_case(s, Mask::band(true, 1, std::nullopt, 7));  // sliding window
        // Compressed keys: the queries' absolute positions (cf 4, NSA-like delta) place the band.
        s.query_pos = {3, 100, 170};
        run_case(s, Mask::band(true, 4, -3));
        run_case(s, Mask::band(true, 4, 0, 2));
    }
}

TEST_P(KvCacheCpu, MaskModIsTheBandPerElement) {
    KvCacheShape s;
    s.batch = 2;
    s.seqlen_q = 5;
    s.cache_lens = {30, 9};
    s.query_pos = {60, 12};
    s.page_size = GetParam().page_size;
    s.capacity = 48;
    const Mask band = Mask::band(true, 2, 0, 6);
    KvCacheCase c(s);
    Mask m = band;
    m.kind = MaskKind::mask_mod;
    m.mask_mod = [&c, band](int b, int, std::int64_t i, std::int64_t j) {
        const std::int64_t y = i + c.delta(band, b);
        return j * 2 <= y && y - 2 * 6 < (j + 1) * 2;  // j <= floor(y / 2) and floor(y / 2) - 6 <= j
    };
    const Status st = attention_with_kvcache(c.args(m));
    ASSERT_TRUE(st.ok()) << st.to_string();
    c.expect_matches(band, kNormTol, kMaxTol);
}

TEST_P(KvCacheCpu, EveryHeadDimPair) {
    for (auto [dqk, dv] : {std::pair{64, 64}, std::pair{128, 128}, std::pair{192, 128}, std::pair{256, 256}}) {
        KvCacheShape s;
        s.dim_qk = dqk;
        s.dim_v = dv;
        s.cache_lens = {33, 70};
        s.new_rows = 2;
        s.capacity = 80;
        s.page_size = GetParam().page_size;
        s.dtype = DType::fp16;
        SCOPED_TRACE(std::to_string(dqk) + "/" + std::to_string(dv));
        KvCacheCase c(s);
        const Status st = attention_with_kvcache(c.args(Mask::none()));
        ASSERT_TRUE(st.ok()) << st.to_string();
        c.expect_matches(Mask::none(), 1e-3, 2e-3);  // fp16 bounds
    }
}

INSTANTIATE_TEST_SUITE_P(Layouts, KvCacheCpu,
                         ::testing::Values(Layout{0, "contiguous"}, Layout{16, "paged16"}, Layout{48, "paged48"},
                                           Layout{256, "paged256"}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace ccattn
