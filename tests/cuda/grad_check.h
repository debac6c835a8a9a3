// Gradient checks of the GPU backward tests: the bounds, and the rows whose gradient is exactly zero
// by structure (query rows that see no key, keys no query sees), from any band's edge rows.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/gpu_test_util.h"
#include "edge_rows.h"

namespace ccattn::test {

// (Sq, Sk) of every sequence of a problem, in row order.
inline SequenceLengths lengths(const Problem& pr) {
    SequenceLengths seqs;
    for (int b = 0; b < pr.num_seqs(); ++b) {
        if (pr.varlen())
            seqs.push_back({pr.cu_seqlens_q[b + 1] - pr.cu_seqlens_q[b], pr.cu_seqlens_k[b + 1] - pr.cu_seqlens_k[b]});
        else
            seqs.push_back({pr.seqlen_q, pr.seqlen_k});
    }
    return seqs;
}

// Dense rows whose gradient is exactly zero by structure.
struct ZeroRows {
    std::vector<char> q, k;
};
// `edges`: every query row's [lo, hi) (unclamped), sequences one after another.
inline ZeroRows zero_rows(const Problem& pr, const EdgeRows& edges) {
    ZeroRows z;
    std::int64_t row_q = 0, row_k = 0;
    for (const auto& [sq, sk] : lengths(pr)) {
        std::vector<int> cover(std::size_t(sk + 1), 0);  // difference array of seen keys
        for (std::int64_t i = 0; i < sq; ++i) {
            const std::int64_t lo = core::clamp(edges.lo[std::size_t(row_q + i)], 0, sk);
            const std::int64_t hi = core::clamp(edges.hi[std::size_t(row_q + i)], 0, sk);
            z.q.push_back(hi <= lo);
            if (hi <= lo) continue;
            ++cover[std::size_t(lo)];
            --cover[std::size_t(hi)];
        }
        int seen = 0;
        for (std::int64_t j = 0; j < sk; ++j) {
            seen += cover[std::size_t(j)];
            z.k.push_back(seen == 0);
        }
        row_q += sq;
        row_k += sk;
    }
    return z;
}

// Gradient bounds: P and dS are rounded to the dtype before their products (2^-9 for bf16, 2^-11 for
// fp16, relative), and out (which D reads) is too.
inline Tolerance grad_tolerance(DType dt) { return dt == DType::bf16 ? Tolerance{6e-2, 2e-2} : Tolerance{1.5e-2, 5e-3}; }

// Per element: exactly 0 on structurally zero rows, else |got - ref| <= elem * (|ref| + rms(ref)), never
// NaN or inf; over the tensor ||got - ref|| <= l2 * ||ref||. `ref` is dense ((row * H + h) * D + d).
inline ::testing::AssertionResult grad_close(const TestTensor& got, const std::vector<double>& ref,
                                             const std::vector<char>& zero_row, Tolerance tol, const std::string& name) {
    if (std::int64_t(ref.size()) != got.numel())
        return ::testing::AssertionFailure() << name << ": reference has " << ref.size() << " elements, tensor " << got.numel();
    const std::int64_t per_row = got.shape[got.rank - 1] * got.shape[got.rank - 2];
    double ss_ref = 0;
    for (double r : ref) ss_ref += r * r;
    const double rms = ref.empty() ? 0 : std::sqrt(ss_ref / double(ref.size()));
    double ss_err = 0;
    std::int64_t bad = 0, idx[4];
    std::string first;
    for (std::int64_t e = 0; e < got.numel(); ++e) {
        got.unravel(e, idx);
        const double g = got.get(got.offset(idx)), r = ref[std::size_t(e)];
        const bool zero = zero_row[std::size_t(e / per_row)] != 0;
        const double err = std::fabs(g - r);
        const double bound = tol.elem * (std::fabs(r) + rms);
        const bool ok = std::isfinite(g) && (zero ? g == 0.0 : err <= bound);
        ss_err += std::isfinite(g) ? err * err : 1e300;
        if (!ok && bad++ == 0) {
            std::ostringstream s;
            s << index_string(got, idx) << " got " << g << " expected " << r << (zero ? " (structural zero)" : "")
              << ", bound " << bound;
            first = s.str();
        }
    }
    const double rel_l2 = ss_ref > 0 ? std::sqrt(ss_err / ss_ref) : std::sqrt(ss_err);
    if (bad == 0 && rel_l2 <= tol.l2) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << name << ": " << bad << " of " << got.numel()
                                         << " elements outside the bound, relative L2 error " << rel_l2 << " (limit "
                                         << tol.l2 << "); first " << first;
}

}  // namespace ccattn::test
