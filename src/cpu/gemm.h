// Small fp32 matrix products on tiles in cache: the only floating-point heavy lifting of the CPU
// backend (S = Q K^T, O += P V and the four products of the backward).
#pragma once

namespace ccattn::cpu {

// C[M][N] = (accumulate ? C : 0) + op(A)[M][K] * B[K][N], row-major with leading dimensions in
// elements. op(A) is A stored [M][K], or with trans_a the transpose of A stored [K][M].
// N must be a multiple of kLanes (tiles are padded to it).
void matmul(float* C, int ldc, const float* A, int lda, bool trans_a, const float* B, int ldb, int M, int N, int K,
            bool accumulate);

}  // namespace ccattn::cpu
