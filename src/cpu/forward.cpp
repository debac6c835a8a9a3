// CPU forward: per query block, an online softmax over the key blocks the plan visits, in fp32
// (scores in log2 units, so one exp2 per element; lse converted back to natural log).
#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <vector>

#include "api/backends.h"
#include "cpu/gemm.h"
#include "cpu/plan.h"
#include "cpu/scratch.h"
#include "cpu/simd.h"
#include "cpu/tile_io.h"

namespace ccattn::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kLn2 = 0.6931471805599453f;

class ForwardEngine {
public:
    explicit ForwardEngine(const core::AttnParams& p)
        : p_(&p),
          predicate_(predicate_of(p)),
          dqk_(round_up(p.dim_qk, kLanes)),
          dv_(round_up(p.dim_v, kLanes)),
          qt_(std::size_t(dqk_ * kTileM)),
          k_(std::size_t(kTileN * dqk_)),
          v_(std::size_t(kTileN * dv_)),
          st_(std::size_t(kTileN * kTileM)),
          o_(std::size_t(kTileM * dv_)) {}

    void start(const QueryBlock& qb) {
        qb_ = qb;
        load_query_columns(*p_, {p_->q, p_->q_strides, p_->dim_qk}, qb_, dqk_, qt_.data());
        std::fill(o_.begin(), o_.end(), 0.f);
        std::fill(m_, m_ + kTileM, kNegInf);
        std::fill(l_, l_ + kTileM, 0.f);
        std::fill(seen_, seen_ + kTileM, false);
    }

    void visit(const KeyBlock& kb, TileMask mask) {
        load_key_rows(*p_, {p_->k, p_->k_strides, p_->dim_qk}, kb, k_.data(), dqk_);
        load_key_rows(*p_, {p_->v, p_->v_strides, p_->dim_v}, kb, v_.data(), dv_);
        // S^T = K Q^T, (kTileN, kTileM); rows past kb.count are left to the mask.
        matmul(st_.data(), kTileM, k_.data(), dqk_, false, qt_.data(), kTileM, kb.count, kTileM, dqk_, false);
        scale_and_mask(st_.data(), ScoreLayout::by_key, p_->scale_log2, qb_, kb, mask, predicate_, seen_);
        softmax_update(kb.count);
        // O += P V = (P^T)^T V, (rows, dv_).
        matmul(o_.data(), dv_, st_.data(), kTileM, true, v_.data(), dv_, qb_.rows, dv_, kb.count, true);
    }

    // Per row (docs/decisions.md, non-finite inputs): empty by the mask: out 0, lse -inf; a NaN or
    // +inf score (the sum is NaN), or only -inf scores (the sum is 0): out NaN, lse NaN.
    void finish() {
        const bool bf16 = p_->dtype == DType::bf16;
        for (int r = 0; r < qb_.rows; ++r) {
            const std::int64_t i = qb_.i[r];
            const int h = qb_.h[r];
            auto* out = static_cast<std::uint16_t*>(p_->out) + core::offset(p_->out_strides, qb_.b, qb_.seq.row_q, i, h);
            const bool normal = l_[r] > 0.f;
            float lse = kNegInf, mul = 0.f;
            if (normal) {
                lse = (m_[r] + std::log2(l_[r])) * kLn2;
                mul = 1.f / l_[r];
            } else if (seen_[r]) {
                lse = mul = kNaN;
            }
            store_row(o_.data() + r * dv_, mul, p_->dim_v, bf16, out);
            if (p_->lse) p_->lse[core::lse_offset(*p_, qb_.b, qb_.seq.row_q, i, h)] = lse;
        }
    }

private:
    // The first `keys` rows of S^T (scaled, masked) become probabilities relative to each query
    // row's running maximum; the rows' sums and outputs rescale with the change of maximum.
    // Query rows are vector lanes here.
    void softmax_update(int keys) {
        float alpha[kTileM];
        for (int r0 = 0; r0 < kTileM; r0 += kLanes) {
            const vfloat m_old = load(m_ + r0);
            vfloat mx = m_old;
            for (int j = 0; j < keys; ++j) mx = vmax(mx, load(st_.data() + j * kTileM + r0));
            // A row with nothing visible yet keeps the base 0, so its probabilities stay 0.
            const vfloat base = mx == splat(kNegInf) ? vfloat{} : mx;
            vfloat sum = {};
            for (int j = 0; j < keys; ++j) {
                float* s = st_.data() + j * kTileM + r0;
                const vfloat e = exp2_approx(load(s) - base);
                store(s, e);
                sum += e;
            }
            const vfloat a = exp2_approx(m_old - base);  // exactly 1 when the maximum is unchanged
            store(l_ + r0, load(l_ + r0) * a + sum);
            store(m_ + r0, mx);
            store(alpha + r0, a);
        }
        for (int r = 0; r < qb_.rows; ++r)
            if (alpha[r] != 1.f) {
                float* o = o_.data() + r * dv_;
                for (int e = 0; e < dv_; ++e) o[e] *= alpha[r];
            }
    }

    const core::AttnParams* p_;
    const MaskModFn* predicate_;
    int dqk_, dv_;  // head dims padded to whole vectors
    QueryBlock qb_;
    std::vector<float> qt_;  // [dqk_][kTileM]: Q transposed
    std::vector<float> k_;   // [kTileN][dqk_]
    std::vector<float> v_;   // [kTileN][dv_]
    std::vector<float> st_;  // [kTileN][kTileM]: scores by key rows, then probabilities
    std::vector<float> o_;   // [kTileM][dv_]: unnormalized output
    float m_[kTileM] = {};   // running maximum per row (log2 units)
    float l_[kTileM] = {};   // running sum of exp2(s - m) per row
    bool seen_[kTileM] = {};  // the row has a visible key (it is not empty by the mask)
};

}  // namespace

Status forward(const core::AttnParams& p) {
    try {
        compute_all_or_nothing(p, false, [](const core::AttnParams& q) {
            run_query_major(q, [&q] { return ForwardEngine(q); });
        });
    } catch (const std::exception& e) {
        return {Code::internal, "", std::string("cpu forward: ") + e.what()};
    } catch (...) {
        return {Code::internal, "", "cpu forward: a host callable threw"};
    }
    return Status::success();
}

}  // namespace ccattn::cpu
