// core::FastDiv: the multiply-high division equals the integer division for every divisor class
// (1, powers of two and their neighbours, random, up to 2^31 - 1) and dividends over [0, 2^31),
// the ends included.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/fast_div.h"

namespace ccattn {
namespace {

void expect_divides(std::uint32_t d, std::uint32_t n) {
    const core::FastDiv f(d);
    ASSERT_EQ(f.div(n), n / d) << n << " / " << d;
    ASSERT_EQ(f.mod(n), n % d) << n << " % " << d;
}

TEST(FastDiv, MatchesDivision) {
    std::mt19937_64 rng(17);
    std::vector<std::uint32_t> divisors;
    for (std::uint32_t d = 1; d <= 300; ++d) divisors.push_back(d);
    for (int k = 1; k < 31; ++k)
        for (std::int64_t delta : {-1, 0, 1}) divisors.push_back(std::uint32_t((std::int64_t(1) << k) + delta));
    for (int i = 0; i < 300; ++i) divisors.push_back(std::uint32_t(rng() % ((std::uint64_t(1) << 31) - 1)) + 1);
    const std::uint32_t kLimit = (std::uint32_t(1) << 31) - 1;
    for (std::uint32_t d : divisors) {
        for (std::uint32_t n : {0u, 1u, d - 1, d, d + 1, 2 * d - 1, kLimit, kLimit - 1, kLimit - d}) {
            if (n > kLimit) continue;
            expect_divides(d, n);
        }
        for (int i = 0; i < 2000; ++i) expect_divides(d, std::uint32_t(rng() % (std::uint64_t(kLimit) + 1)));
        // every multiple boundary of a small window
        for (std::uint64_t q = 0; q < 64 && q * d <= kLimit; ++q)
            for (std::int64_t e : {-1, 0, 1}) {
                const std::int64_t n = std::int64_t(q * d) + e;
                if (n >= 0 && n <= kLimit) expect_divides(d, std::uint32_t(n));
            }
        if (HasFatalFailure()) return;
    }
}

}  // namespace
}  // namespace ccattn
