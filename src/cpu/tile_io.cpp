#include "cpu/tile_io.h"

#include <cstring>

#include "core/dtype.h"
#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace ccattn::cpu {
namespace {

constexpr int kMaxHeadDim = 512;  // the largest head dim validation accepts

const std::uint16_t* row_of(const TensorRef& t, int b, std::int64_t row0, std::int64_t i, int h) {
    return static_cast<const std::uint16_t*>(t.data) + core::offset(t.strides, b, row0, i, h);
}

}  // namespace

void load_row(const std::uint16_t* src, bool bf16, int n, int padded, float* dst) {
    int e = 0;
    if (bf16) {
        for (; e < n; ++e) {
            const std::uint32_t u = std::uint32_t(src[e]) << 16;
            std::memcpy(dst + e, &u, 4);
        }
    } else {
#if defined(__F16C__)
        for (; e + 8 <= n; e += 8)
            _mm256_storeu_ps(dst + e, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + e))));
#endif
        for (; e < n; ++e) dst[e] = core::fp16_to_float(src[e]);
    }
    for (; e < padded; ++e) dst[e] = 0.f;
}

void store_row(const float* src, float mul, int n, bool bf16, std::uint16_t* dst) {
    for (int e = 0; e < n; ++e) dst[e] = core::from_float(src[e] * mul, bf16);
}

void load_query_rows(const core::AttnParams& p, const TensorRef& t, const QueryBlock& qb, float* dst, int ld) {
    const bool bf16 = p.dtype == DType::bf16;
    for (int r = 0; r < qb.rows; ++r) load_row(row_of(t, qb.b, qb.seq.row_q, qb.i[r], qb.h[r]), bf16, t.dim, ld, dst + r * ld);
}

void load_query_columns(const core::AttnParams& p, const TensorRef& t, const QueryBlock& qb, int padded_dim, float* dst) {
    const bool bf16 = p.dtype == DType::bf16;
    float row[kMaxHeadDim];
    std::memset(dst, 0, sizeof(float) * std::size_t(padded_dim * kTileM));
    for (int r = 0; r < qb.rows; ++r) {
        load_row(row_of(t, qb.b, qb.seq.row_q, qb.i[r], qb.h[r]), bf16, t.dim, t.dim, row);
        for (int e = 0; e < t.dim; ++e) dst[e * kTileM + r] = row[e];
    }
}

void load_key_rows(const core::AttnParams& p, const TensorRef& t, const KeyBlock& kb, float* dst, int ld) {
    const bool bf16 = p.dtype == DType::bf16;
    for (int j = 0; j < kb.count; ++j)
        load_row(row_of(t, kb.b, kb.seq.row_k, kb.n0 + j, kb.kvh), bf16, t.dim, ld, dst + j * ld);
    std::memset(dst + kb.count * ld, 0, sizeof(float) * std::size_t((kTileN - kb.count) * ld));
}

void load_key_columns(const core::AttnParams& p, const TensorRef& t, const KeyBlock& kb, int padded_dim, float* dst) {
    const bool bf16 = p.dtype == DType::bf16;
    float row[kMaxHeadDim];  // one converted key
    std::memset(dst, 0, sizeof(float) * std::size_t(padded_dim * kTileN));
    for (int j = 0; j < kb.count; ++j) {
        load_row(row_of(t, kb.b, kb.seq.row_k, kb.n0 + j, kb.kvh), bf16, t.dim, t.dim, row);
        for (int e = 0; e < t.dim; ++e) dst[e * kTileN + j] = row[e];
    }
}

}  // namespace ccattn::cpu
