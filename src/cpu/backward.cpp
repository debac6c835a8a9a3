// CPU backward, two passes without atomics (deterministic): key-major for dK, dV (a key block
// accumulates over every query block that sees it; with GQA packing one pass covers all query
// heads of its KV head), then query-major for dQ. Both recompute P = exp2(S - lse) from the
// forward's lse, with D = rowsum(dO * O) from the forward's out.
#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <vector>

#include "api/backends.h"
#include "core/dtype.h"
#include "cpu/gemm.h"
#include "cpu/plan.h"
#include "cpu/scratch.h"
#include "cpu/simd.h"
#include "cpu/tile_io.h"

namespace ccattn::cpu {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// D[dense_row * Hq + h] = sum_e dO[e] * O[e], in fp32 from the stored bf16/fp16 values.
std::vector<float> row_dot_dout_out(const core::AttnParams& p) {
    std::vector<float> d(std::size_t(p.total_q * p.heads_q));
    const bool bf16 = p.dtype == DType::bf16;
    const auto* out = static_cast<const std::uint16_t*>(p.out);
    const auto* dout = static_cast<const std::uint16_t*>(p.dout);
    parallel_for(std::int64_t(p.batch) * p.heads_q, p.num_threads, [&] {
        return [&](std::int64_t item) {
            const int b = int(item / p.heads_q), h = int(item % p.heads_q);
            const core::Sequence seq = core::sequence(p, b);
            for (std::int64_t i = 0; i < seq.seqlen_q; ++i) {
                const std::uint16_t* o = out + core::offset(p.out_strides, b, seq.row_q, i, h);
                const std::uint16_t* g = dout + core::offset(p.dout_strides, b, seq.row_q, i, h);
                float s = 0.f;
                for (int e = 0; e < p.dim_v; ++e) s += core::to_float(o[e], bf16) * core::to_float(g[e], bf16);
                d[std::size_t(dense_row(p, b, seq, i) * p.heads_q + h)] = s;
            }
        };
    });
    return d;
}

// Per row of a query block: lse in log2 units (+inf for empty and padding rows, so their
// probabilities are 0) and D.
void load_row_stats(const core::AttnParams& p, const std::vector<float>& d, const QueryBlock& qb, float* lse2,
                    float* delta) {
    constexpr float kInf = std::numeric_limits<float>::infinity();
    for (int r = 0; r < kTileM; ++r) {
        lse2[r] = kInf;
        delta[r] = 0.f;
        if (r >= qb.rows) continue;
        const float l = p.lse[core::lse_offset(p, qb.b, qb.seq.row_q, qb.i[r], qb.h[r])];
        lse2[r] = l == -kInf ? kInf : l * kLog2e;
        delta[r] = d[std::size_t(dense_row(p, qb.b, qb.seq, qb.i[r]) * p.heads_q + qb.h[r])];
    }
}

void store_key_rows(const core::AttnParams& p, const KeyBlock& kb, const float* src, int ld, float mul, void* base,
                    const core::Strides& strides, int dim) {
    const bool bf16 = p.dtype == DType::bf16;
    for (int j = 0; j < kb.count; ++j)
        store_row(src + j * ld, mul, dim, bf16,
                  static_cast<std::uint16_t*>(base) + core::offset(strides, kb.b, kb.seq.row_k, kb.n0 + j, kb.kvh));
}

// dK, dV of one key block, accumulated over the query blocks that see it. Scores by query rows:
// K^T and V^T are loaded once per key block, each visit loads plain Q and dO rows.
class KeyGradEngine {
public:
    KeyGradEngine(const core::AttnParams& p, const std::vector<float>& d)
        : p_(&p),
          d_(&d),
          predicate_(predicate_of(p)),
          dqk_(round_up(p.dim_qk, kLanes)),
          dv_(round_up(p.dim_v, kLanes)),
          kt_(std::size_t(dqk_ * kTileN)),
          vt_(std::size_t(dv_ * kTileN)),
          q_(std::size_t(kTileM * dqk_)),
          dout_(std::size_t(kTileM * dv_)),
          s_(std::size_t(kTileM * kTileN)),
          ds_(std::size_t(kTileM * kTileN)),
          dk_(std::size_t(kTileN * dqk_)),
          dvacc_(std::size_t(kTileN * dv_)) {}

    void start(const KeyBlock& kb) {
        kb_ = kb;
        load_key_columns(*p_, {p_->k, p_->k_strides, p_->dim_qk}, kb, dqk_, kt_.data());
        load_key_columns(*p_, {p_->v, p_->v_strides, p_->dim_v}, kb, dv_, vt_.data());
        std::fill(dk_.begin(), dk_.end(), 0.f);
        std::fill(dvacc_.begin(), dvacc_.end(), 0.f);
    }

    void visit(const QueryBlock& qb, TileMask mask) {
        const int rows = qb.rows;
        load_query_rows(*p_, {p_->q, p_->q_strides, p_->dim_qk}, qb, q_.data(), dqk_);
        load_query_rows(*p_, {p_->dout, p_->dout_strides, p_->dim_v}, qb, dout_.data(), dv_);
        load_row_stats(*p_, *d_, qb, lse2_, delta_);
        // S = Q K^T and dP = dO V^T, (rows, kTileN); then P = exp2(S - lse), dS = P (dP - D).
        matmul(s_.data(), kTileN, q_.data(), dqk_, false, kt_.data(), kTileN, rows, kTileN, dqk_, false);
        scale_and_mask(s_.data(), ScoreLayout::by_query, p_->scale_log2, qb, kb_, mask, predicate_);
        matmul(ds_.data(), kTileN, dout_.data(), dv_, false, vt_.data(), kTileN, rows, kTileN, dv_, false);
        for (int r = 0; r < rows; ++r) {
            float* sr = s_.data() + r * kTileN;
            float* dr = ds_.data() + r * kTileN;
            for (int j = 0; j < kTileN; j += kLanes) {
                const vfloat pr = exp2_approx(load(sr + j) - lse2_[r]);
                store(sr + j, pr);
                store(dr + j, pr * (load(dr + j) - delta_[r]));
            }
        }
        // dV += P^T dO, dK += dS^T Q (the scale is applied once, at the store).
        matmul(dvacc_.data(), dv_, s_.data(), kTileN, true, dout_.data(), dv_, kTileN, dv_, rows, true);
        matmul(dk_.data(), dqk_, ds_.data(), kTileN, true, q_.data(), dqk_, kTileN, dqk_, rows, true);
    }

    void finish() {
        store_key_rows(*p_, kb_, dk_.data(), dqk_, p_->scale, p_->dk, p_->dk_strides, p_->dim_qk);
        store_key_rows(*p_, kb_, dvacc_.data(), dv_, 1.f, p_->dv, p_->dv_strides, p_->dim_v);
    }

private:
    const core::AttnParams* p_;
    const std::vector<float>* d_;
    const MaskModFn* predicate_;
    int dqk_, dv_;
    KeyBlock kb_;
    std::vector<float> kt_;     // [dqk_][kTileN]: K transposed
    std::vector<float> vt_;     // [dv_][kTileN]: V transposed
    std::vector<float> q_;      // [kTileM][dqk_]
    std::vector<float> dout_;   // [kTileM][dv_]
    std::vector<float> s_;      // [kTileM][kTileN]: scores, then P
    std::vector<float> ds_;     // [kTileM][kTileN]: dP, then dS
    std::vector<float> dk_;     // [kTileN][dqk_]
    std::vector<float> dvacc_;  // [kTileN][dv_]
    float lse2_[kTileM] = {}, delta_[kTileM] = {};
};

// dQ of one query block, accumulated over the key blocks it sees. Scores by key rows (as in the
// forward): Q^T and dO^T are loaded once per query block, each visit loads plain K and V rows.
class QueryGradEngine {
public:
    QueryGradEngine(const core::AttnParams& p, const std::vector<float>& d)
        : p_(&p),
          d_(&d),
          predicate_(predicate_of(p)),
          dqk_(round_up(p.dim_qk, kLanes)),
          dv_(round_up(p.dim_v, kLanes)),
          qt_(std::size_t(dqk_ * kTileM)),
          doutt_(std::size_t(dv_ * kTileM)),
          k_(std::size_t(kTileN * dqk_)),
          v_(std::size_t(kTileN * dv_)),
          st_(std::size_t(kTileN * kTileM)),
          dst_(std::size_t(kTileN * kTileM)),
          dq_(std::size_t(kTileM * dqk_)) {}

    void start(const QueryBlock& qb) {
        qb_ = qb;
        load_query_columns(*p_, {p_->q, p_->q_strides, p_->dim_qk}, qb_, dqk_, qt_.data());
        load_query_columns(*p_, {p_->dout, p_->dout_strides, p_->dim_v}, qb_, dv_, doutt_.data());
        load_row_stats(*p_, *d_, qb_, lse2_, delta_);
        std::fill(dq_.begin(), dq_.end(), 0.f);
    }

    void visit(const KeyBlock& kb, TileMask mask) {
        load_key_rows(*p_, {p_->k, p_->k_strides, p_->dim_qk}, kb, k_.data(), dqk_);
        load_key_rows(*p_, {p_->v, p_->v_strides, p_->dim_v}, kb, v_.data(), dv_);
        // S^T = K Q^T and dP^T = V dO^T, (kTileN, kTileM); then P^T, dS^T with rows as lanes.
        matmul(st_.data(), kTileM, k_.data(), dqk_, false, qt_.data(), kTileM, kb.count, kTileM, dqk_, false);
        scale_and_mask(st_.data(), ScoreLayout::by_key, p_->scale_log2, qb_, kb, mask, predicate_);
        matmul(dst_.data(), kTileM, v_.data(), dv_, false, doutt_.data(), kTileM, kb.count, kTileM, dv_, false);
        for (int j = 0; j < kb.count; ++j)
            for (int r0 = 0; r0 < kTileM; r0 += kLanes) {
                const vfloat pr = exp2_approx(load(st_.data() + j * kTileM + r0) - load(lse2_ + r0));
                float* ds = dst_.data() + j * kTileM + r0;
                store(ds, pr * (load(ds) - load(delta_ + r0)));
            }
        // dQ += dS K = (dS^T)^T K, (rows, dqk_).
        matmul(dq_.data(), dqk_, dst_.data(), kTileM, true, k_.data(), dqk_, qb_.rows, dqk_, kb.count, true);
    }

    void finish() {
        const bool bf16 = p_->dtype == DType::bf16;
        for (int r = 0; r < qb_.rows; ++r)
            store_row(dq_.data() + r * dqk_, p_->scale, p_->dim_qk, bf16,
                      static_cast<std::uint16_t*>(p_->dq) +
                          core::offset(p_->dq_strides, qb_.b, qb_.seq.row_q, qb_.i[r], qb_.h[r]));
    }

private:
    const core::AttnParams* p_;
    const std::vector<float>* d_;
    const MaskModFn* predicate_;
    int dqk_, dv_;
    QueryBlock qb_;
    std::vector<float> qt_;     // [dqk_][kTileM]: Q transposed
    std::vector<float> doutt_;  // [dv_][kTileM]: dO transposed
    std::vector<float> k_;      // [kTileN][dqk_]
    std::vector<float> v_;      // [kTileN][dv_]
    std::vector<float> st_;     // [kTileN][kTileM]: scores by key rows
    std::vector<float> dst_;    // [kTileN][kTileM]: dP^T, then dS^T
    std::vector<float> dq_;     // [kTileM][dqk_]
    float lse2_[kTileM] = {}, delta_[kTileM] = {};
};

}  // namespace

Status backward(const core::AttnParams& p) {
    try {
        compute_all_or_nothing(p, true, [](const core::AttnParams& q) {
            const std::vector<float> d = row_dot_dout_out(q);
            run_key_major(q, [&] { return KeyGradEngine(q, d); });
            run_query_major(q, [&] { return QueryGradEngine(q, d); });
        });
    } catch (const std::exception& e) {
        return {Code::internal, "", std::string("cpu backward: ") + e.what()};
    } catch (...) {
        return {Code::internal, "", "cpu backward: a host callable threw"};
    }
    return Status::success();
}

}  // namespace ccattn::cpu
