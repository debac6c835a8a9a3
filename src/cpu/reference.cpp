#include "cpu/reference.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/dtype.h"
#include "cpu/thread_pool.h"

namespace ccattn::cpu {
namespace {

// A strided [rows, heads, dim] host tensor copied densely into fp64, rows over all sequences.
std::vector<double> dense(const core::AttnParams& p, const void* data, const core::Strides& s, bool keys, int heads,
                          int dim) {
    const bool bf16 = p.dtype == DType::bf16;
    const auto* x = static_cast<const std::uint16_t*>(data);
    std::vector<double> d(std::size_t((keys ? p.total_k : p.total_q) * heads * dim));
    std::int64_t row = 0;
    for (int b = 0; b < p.batch; ++b) {
        core::Sequence seq = core::sequence(p, b);
        std::int64_t len = keys ? seq.seqlen_k : seq.seqlen_q;
        std::int64_t row0 = keys ? seq.row_k : seq.row_q;
        for (std::int64_t i = 0; i < len; ++i, ++row)
            for (int h = 0; h < heads; ++h)
                for (int e = 0; e < dim; ++e)
                    d[std::size_t((row * heads + h) * dim + e)] = core::to_float(x[core::offset(s, b, row0, i, h) + e], bf16);
    }
    return d;
}

// First dense row of sequence b (fixed length: b*S; varlen: its cu_seqlens entry).
std::int64_t first_row(const core::AttnParams& p, int b, bool keys) {
    core::Sequence seq = core::sequence(p, b);
    if (p.varlen()) return keys ? seq.row_k : seq.row_q;
    return b * (keys ? p.seqlen_k : p.seqlen_q);
}

bool in_tile_list(const core::TileLists& l, int b, int h, std::int64_t mt, std::int64_t nt) {
    std::int32_t n = l.count[b * l.count_batch_stride + h * l.count_head_stride + mt * l.count_tile_stride];
    const std::int32_t* idx = l.index + b * l.index_batch_stride + h * l.index_head_stride + mt * l.index_tile_stride;
    for (std::int32_t e = 0; e < n; ++e)
        if (idx[e] == nt) return true;
    return false;
}

double dot(const double* a, const double* b, int n) {
    double s = 0;
    for (int e = 0; e < n; ++e) s += a[e] * b[e];
    return s;
}

// Calls f(b, h, hk, row, krow0, seq, i) for every query row of every head, in parallel over
// (sequence, KV head): the rows of one item touch only their own dq rows and their KV head's
// dk, dv rows, so no two threads write the same element.
template <class F>
void for_each_row(const core::AttnParams& p, F f) {
    parallel_for(std::int64_t(p.batch) * p.heads_kv, 0, [&] {
        return [&](std::int64_t item) {
            const int b = int(item / p.heads_kv), hk = int(item % p.heads_kv);
            const core::Sequence seq = core::sequence(p, b);
            const std::int64_t row0 = first_row(p, b, false), krow0 = first_row(p, b, true);
            for (int h = hk * p.group; h < (hk + 1) * p.group; ++h)
                for (std::int64_t i = 0; i < seq.seqlen_q; ++i) f(b, h, hk, row0 + i, krow0, seq, i);
        };
    });
}

}  // namespace

bool reference_visible(const core::AttnParams& p, int b, int h, std::int64_t i, std::int64_t j) {
    core::Sequence seq = core::sequence(p, b);
    switch (p.mask_kind) {
        case MaskKind::band: return core::visible(p.band.for_sequence(seq.seqlen_q, seq.seqlen_k), i, j);
        case MaskKind::mask_mod: return p.host_mask->mask_mod(b, h, i, j);
        case MaskKind::custom_band: {
            const CustomBand& cb = p.host_mask->custom_band;
            return core::clamp(cb.lo(b, i), 0, seq.seqlen_k) <= j && j < core::clamp(cb.hi(b, i), 0, seq.seqlen_k);
        }
        case MaskKind::band_tensors: {
            // Read directly (not through core::TensorBand) so the oracle stays independent of it.
            const core::RowTensor &lo = p.band_rows.lo, &hi = p.band_rows.hi;
            const std::int64_t row = seq.row_q + i;
            return core::clamp(lo.at(b, row), 0, seq.seqlen_k) <= j && j < core::clamp(hi.at(b, row), 0, seq.seqlen_k);
        }
        case MaskKind::block_sparse: {
            std::int64_t mt = i / p.sparse_tile_m, nt = j / p.sparse_tile_n;
            if (in_tile_list(p.sparse_full, b, h, mt, nt)) return true;
            return in_tile_list(p.sparse_partial, b, h, mt, nt) && p.host_mask->block_sparse.mask_mod(b, h, i, j);
        }
    }
    return false;
}

Reference reference_forward(const core::AttnParams& p) {
    const int hq = p.heads_q, hkv = p.heads_kv, dqk = p.dim_qk, dv = p.dim_v;
    std::vector<double> q = dense(p, p.q, p.q_strides, false, hq, dqk);
    std::vector<double> k = dense(p, p.k, p.k_strides, true, hkv, dqk);
    std::vector<double> v = dense(p, p.v, p.v_strides, true, hkv, dv);
    Reference r;
    r.out.assign(std::size_t(p.total_q * hq * dv), 0.0);
    r.lse.assign(std::size_t(p.total_q * hq), -std::numeric_limits<double>::infinity());
    for_each_row(p, [&](int b, int h, int hk, std::int64_t row, std::int64_t krow0, const core::Sequence& seq,
                        std::int64_t i) {
        const double* qi = &q[std::size_t((row * hq + h) * dqk)];
        std::vector<double> s(std::size_t(seq.seqlen_k), -std::numeric_limits<double>::infinity());
        double mx = -std::numeric_limits<double>::infinity();
        bool seen = false, undefined = false;  // a visible key; a NaN or +inf score
        for (std::int64_t j = 0; j < seq.seqlen_k; ++j) {
            if (!reference_visible(p, b, h, i, j)) continue;
            s[j] = double(p.scale) * dot(qi, &k[std::size_t(((krow0 + j) * hkv + hk) * dqk)], dqk);
            seen = true;
            undefined = undefined || std::isnan(s[j]) || s[j] == std::numeric_limits<double>::infinity();
            mx = std::max(mx, s[j]);
        }
        if (!seen) return;  // empty row: out 0, lse -inf
        // Non-finite scores (docs/decisions.md): NaN or +inf, or nothing above -inf: out NaN, lse NaN.
        if (undefined || mx == -std::numeric_limits<double>::infinity()) {
            const double nan = std::numeric_limits<double>::quiet_NaN();
            std::fill_n(&r.out[std::size_t((row * hq + h) * dv)], dv, nan);
            r.lse[std::size_t(row * hq + h)] = nan;
            return;
        }
        double sum = 0;
        for (double& x : s) sum += (x = std::exp(x - mx));
        double* o = &r.out[std::size_t((row * hq + h) * dv)];
        for (std::int64_t j = 0; j < seq.seqlen_k; ++j) {
            if (s[j] == 0) continue;
            const double* vj = &v[std::size_t(((krow0 + j) * hkv + hk) * dv)];
            for (int e = 0; e < dv; ++e) o[e] += s[j] / sum * vj[e];
        }
        r.lse[std::size_t(row * hq + h)] = mx + std::log(sum);
    });
    return r;
}

void reference_backward(const core::AttnParams& p, Reference& r) {
    if (r.out.empty()) r = reference_forward(p);
    const int hq = p.heads_q, hkv = p.heads_kv, dqk = p.dim_qk, dv = p.dim_v;
    std::vector<double> q = dense(p, p.q, p.q_strides, false, hq, dqk);
    std::vector<double> k = dense(p, p.k, p.k_strides, true, hkv, dqk);
    std::vector<double> v = dense(p, p.v, p.v_strides, true, hkv, dv);
    std::vector<double> dout = dense(p, p.dout, p.dout_strides, false, hq, dv);
    // D = rowsum(dO * out) from the out the backward is given (the contract's definition), not from
    // the exact fp64 out: where a row's gradient cancels to near zero, the dtype rounding of out is
    // what dq measures (seen on a varlen row with two visible keys: 0.0062 against 0.0010).
    std::vector<double> out = dense(p, p.out, p.out_strides, false, hq, dv);
    r.dq.assign(std::size_t(p.total_q * hq * dqk), 0.0);
    r.dk.assign(std::size_t(p.total_k * hkv * dqk), 0.0);
    r.dv.assign(std::size_t(p.total_k * hkv * dv), 0.0);
    const double scale = p.scale;
    for_each_row(p, [&](int b, int h, int hk, std::int64_t row, std::int64_t krow0, const core::Sequence& seq,
                        std::int64_t i) {
        double lse = r.lse[std::size_t(row * hq + h)];
        if (lse == -std::numeric_limits<double>::infinity()) return;  // empty row: no gradient
        const double* qi = &q[std::size_t((row * hq + h) * dqk)];
        const double* doi = &dout[std::size_t((row * hq + h) * dv)];
        double* dqi = &r.dq[std::size_t((row * hq + h) * dqk)];
        const double d_i = dot(doi, &out[std::size_t((row * hq + h) * dv)], dv);
        for (std::int64_t j = 0; j < seq.seqlen_k; ++j) {
            if (!reference_visible(p, b, h, i, j)) continue;
            std::size_t kj = std::size_t((krow0 + j) * hkv + hk);
            double pij = std::exp(scale * dot(qi, &k[kj * dqk], dqk) - lse);
            double ds = pij * (dot(doi, &v[kj * dv], dv) - d_i);
            for (int e = 0; e < dqk; ++e) {
                dqi[e] += scale * ds * k[kj * dqk + e];
                r.dk[kj * dqk + e] += scale * ds * qi[e];
            }
            for (int e = 0; e < dv; ++e) r.dv[kj * dv + e] += pij * doi[e];
        }
    });
}

}  // namespace ccattn::cpu
