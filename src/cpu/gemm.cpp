#include "cpu/gemm.h"

#include "cpu/simd.h"

namespace ccattn::cpu {
namespace {

// Register block: RM rows x NV vectors of C stay in registers across the whole K loop.
// 6 x 4 uses 24 of AVX-512's 32 vector registers; AVX2 has 16, so 3 x 4.
constexpr int kMaxRows = kLanes == 16 ? 6 : 3;
constexpr int kMaxVectors = 4;

template <int RM, int NV, bool TransA>
void block(float* C, int ldc, const float* A, int lda, const float* B, int ldb, int K, bool accumulate) {
    vfloat acc[RM][NV];
    for (int r = 0; r < RM; ++r)
        for (int v = 0; v < NV; ++v) acc[r][v] = accumulate ? load(C + r * ldc + v * kLanes) : vfloat{};
    for (int k = 0; k < K; ++k) {
        vfloat b[NV];
        for (int v = 0; v < NV; ++v) b[v] = load(B + k * ldb + v * kLanes);
        for (int r = 0; r < RM; ++r) {
            const float a = TransA ? A[k * lda + r] : A[r * lda + k];
            for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
        }
    }
    for (int r = 0; r < RM; ++r)
        for (int v = 0; v < NV; ++v) store(C + r * ldc + v * kLanes, acc[r][v]);
}

using BlockFn = void (*)(float*, int, const float*, int, const float*, int, int, bool);

template <int RM, bool TransA>
BlockFn pick_vectors(int nv) {
    switch (nv) {
        case 1: return &block<RM, 1, TransA>;
        case 2: return &block<RM, 2, TransA>;
        case 3: return &block<RM, 3, TransA>;
        default: return &block<RM, 4, TransA>;
    }
}

template <bool TransA>
BlockFn pick(int rm, int nv) {
    switch (rm) {
        case 1: return pick_vectors<1, TransA>(nv);
        case 2: return pick_vectors<2, TransA>(nv);
        case 3: return pick_vectors<3, TransA>(nv);
        case 4: return pick_vectors<4, TransA>(nv);
        case 5: return pick_vectors<5, TransA>(nv);
        default: return pick_vectors<6, TransA>(nv);
    }
}

}  // namespace

void matmul(float* C, int ldc, const float* A, int lda, bool trans_a, const float* B, int ldb, int M, int N, int K,
            bool accumulate) {
    for (int n0 = 0; n0 < N; n0 += kMaxVectors * kLanes) {
        const int nv = (N - n0) / kLanes < kMaxVectors ? (N - n0) / kLanes : kMaxVectors;
        for (int m0 = 0; m0 < M; m0 += kMaxRows) {
            const int rm = M - m0 < kMaxRows ? M - m0 : kMaxRows;
            // Row m0 of op(A): row m0 of A, or column m0 of the stored transpose.
            const float* a = trans_a ? A + m0 : A + m0 * lda;
            BlockFn fn = trans_a ? pick<true>(rm, nv) : pick<false>(rm, nv);
            fn(C + m0 * ldc + n0, ldc, a, lda, B + n0, ldb, K, accumulate);
        }
    }
}

}  // namespace ccattn::cpu
