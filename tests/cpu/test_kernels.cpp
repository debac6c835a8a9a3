// The CPU backend's arithmetic building blocks: exp2 approximation and tile matrix products.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/simd.h"

namespace ccattn::cpu {
namespace {

TEST(Exp2Approx, RelativeErrorBelow2e7) {
    double worst = 0;
    for (float x = -126.f; x < 127.f; x += 0.00731f) {
        const double want = std::exp2(double(x));
        worst = std::max(worst, std::fabs(double(exp2_approx(splat(x))[0]) - want) / want);
    }
    EXPECT_LT(worst, 2e-7);
}

TEST(Exp2Approx, ExactAtZeroAndBelowRange) {
    EXPECT_EQ(exp2_approx(splat(0.f))[0], 1.f);  // an unchanged running maximum rescales by exactly 1
    EXPECT_EQ(exp2_approx(splat(-std::numeric_limits<float>::infinity()))[0], 0.f);
    EXPECT_EQ(exp2_approx(splat(-126.5f))[0], 0.f);
    EXPECT_EQ(exp2_approx(splat(-1e30f))[0], 0.f);
    EXPECT_EQ(exp2_approx(splat(3.f))[0], 8.f);
}

// C (+)= op(A) B against a plain triple loop, over every register-block shape and remainder.
TEST(Matmul, MatchesNaive) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (bool trans_a : {false, true})
        for (bool acc : {false, true})
            for (int M : {1, 2, 3, 5, 6, 7, 13, 64})
                for (int N : {kLanes, 2 * kLanes, 3 * kLanes, 4 * kLanes, 5 * kLanes, 7 * kLanes})
                    for (int K : {1, 7, 64}) {
                        const int lda = (trans_a ? M : K) + 3, ldb = N + kLanes, ldc = N + 2 * kLanes;
                        std::vector<float> A(std::size_t((trans_a ? K : M) * lda)), B(std::size_t(K * ldb)),
                            C(std::size_t(M * ldc));
                        for (float& x : A) x = u(rng);
                        for (float& x : B) x = u(rng);
                        for (float& x : C) x = u(rng);
                        std::vector<float> want = C;
                        for (int m = 0; m < M; ++m)
                            for (int n = 0; n < N; ++n) {
                                double s = acc ? want[std::size_t(m * ldc + n)] : 0.0;
                                for (int k = 0; k < K; ++k)
                                    s += double(trans_a ? A[std::size_t(k * lda + m)] : A[std::size_t(m * lda + k)]) *
                                         B[std::size_t(k * ldb + n)];
                                want[std::size_t(m * ldc + n)] = float(s);
                            }
                        matmul(C.data(), ldc, A.data(), lda, trans_a, B.data(), ldb, M, N, K, acc);
                        for (std::size_t e = 0; e < C.size(); ++e)
                            ASSERT_NEAR(C[e], want[e], 1e-4) << "M " << M << " N " << N << " K " << K << " trans "
                                                              << trans_a << " acc " << acc << " at " << e;
                    }
}

}  // namespace
}  // namespace ccattn::cpu
