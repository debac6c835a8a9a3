// Inputs with planted NaN and infinite values for the GPU tests of docs/decisions.md 13, and the
// check of a forward's out and lse against the fp64 reference on the same inputs: rows the reference
// leaves empty have out 0 and lse -inf, rows it makes NaN are NaN throughout, the others are close.
#pragma once

#include <cmath>
#include <limits>
#include <string>

#include "cuda/gpu_test_util.h"

namespace ccattn::test {

// 150 queries over 100 keys, Hq 2 over Hkv 1: under kNonFiniteBand rows 0..19 see no key and row i
// sees keys [0, floor((i - 20) / 2) + 1).
inline Problem non_finite_problem(int dim_qk, int dim_v, DType dtype) {
    Problem pr;
    pr.seqlen_q = 150;
    pr.seqlen_k = 100;
    pr.heads_q = 2;
    pr.heads_kv = 1;
    pr.dim_qk = dim_qk;
    pr.dim_v = dim_v;
    pr.dtype = dtype;
    pr.seed = 14;
    return pr;
}
inline Mask non_finite_band() { return Mask::band(true, 2, -20); }

enum class Planted {
    nan_and_inf,       // NaN in q (an empty row and a visible one), +inf in q, NaN in key 40
    only_minus_inf,    // rows 10 (empty) and 90 whose every visible score is -inf
    minus_inf_scores,  // key 30 scores -inf for every row that sees it: it weighs 0
};
inline const char* planted_name(Planted p) {
    return p == Planted::nan_and_inf ? "nan_and_inf" : p == Planted::only_minus_inf ? "only_minus_inf" : "minus_inf_scores";
}

// Element (query or key position i, head h, e) of a fixed-length [1, S, H, D] tensor.
inline std::int64_t at(const TestTensor& t, std::int64_t i, int h, int e) {
    const std::int64_t idx[4] = {0, i, h, e};
    return t.offset(idx);
}

// Plants `what` in the host copies of q and k and uploads them.
inline void plant(AttnTensors& t, Planted what) {
    constexpr double kInf = std::numeric_limits<double>::infinity();
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const int dqk = int(t.q.shape[3]);
    switch (what) {
        case Planted::nan_and_inf:
            t.q.set(at(t.q, 5, 0, 3), nan);
            t.q.set(at(t.q, 30, 1, 3), nan);
            t.q.set(at(t.q, 60, 0, 0), kInf);
            t.k.set(at(t.k, 40, 0, 2), nan);
            break;
        case Planted::only_minus_inf:
            for (std::int64_t j = 0; j < t.k.shape[1]; ++j) t.k.set(at(t.k, j, 0, 0), std::fabs(t.k.get(at(t.k, j, 0, 0))) + 1);
            for (std::int64_t i : {10, 90}) {
                for (int e = 0; e < dqk; ++e) t.q.set(at(t.q, i, 0, e), 0.0);
                t.q.set(at(t.q, i, 0, 0), -kInf);
            }
            break;
        case Planted::minus_inf_scores:
            for (std::int64_t i = 0; i < t.q.shape[1]; ++i)
                for (int h = 0; h < 2; ++h) t.q.set(at(t.q, i, h, 1), std::fabs(t.q.get(at(t.q, i, h, 1))) + 0.5);
            t.k.set(at(t.k, 30, 0, 1), -kInf);
            break;
    }
    t.q.upload();
    t.k.upload();
}

inline ::testing::AssertionResult follows_non_finite_rule(const TestTensor& out, const TestTensor& lse,
                                                          const cpu::Reference& ref, Tolerance tol) {
    const std::int64_t rows = out.shape[1];
    const int heads = int(out.shape[2]), dim = int(out.shape[3]);
    double ss = 0;
    std::int64_t n = 0;
    for (double r : ref.out)
        if (std::isfinite(r)) ss += r * r, ++n;
    const double rms = n ? std::sqrt(ss / double(n)) : 0;
    for (std::int64_t i = 0; i < rows; ++i)
        for (int h = 0; h < heads; ++h) {
            const double want = ref.lse[std::size_t(i * heads + h)];
            const std::int64_t lse_idx[3] = {0, h, i};
            const double got = lse.get(lse.offset(lse_idx));
            auto fail = [&](const std::string& what) {
                return ::testing::AssertionFailure() << "row " << i << " head " << h << ": " << what << " (lse " << got
                                                     << ", reference " << want << ")";
            };
            if (std::isnan(want) != std::isnan(got)) return fail("NaN in one lse only");
            if (std::isinf(want) && !(std::isinf(got) && got < 0)) return fail("an empty row's lse is not -inf");
            if (std::isfinite(want) && !(std::fabs(got - want) <= 2e-4 * std::max(1.0, std::fabs(want))))
                return fail("lse differs");
            for (int e = 0; e < dim; ++e) {
                const double g = out.get(at(out, i, h, e)), r = ref.out[std::size_t((i * heads + h) * dim + e)];
                if (std::isnan(r) ? !std::isnan(g) : !(std::fabs(g - r) <= tol.elem * (std::fabs(r) + rms)))
                    return fail("out[" + std::to_string(e) + "] = " + std::to_string(g) + ", reference " + std::to_string(r));
            }
        }
    return ::testing::AssertionSuccess();
}

}  // namespace ccattn::test
