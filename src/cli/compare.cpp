#include "cli/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "api/validate.h"
#include "cpu/reference.h"

namespace ccattn::cli {
namespace {

constexpr double kLseBound = 1e-3;

// A host view for reading; the reference never writes through it.
Tensor read_view(const HostArray& a) {
    if (a.empty_shape()) return Tensor{};
    return a.view(const_cast<unsigned char*>(a.bytes.data()), Device::cpu);
}

OutputError compare(const std::string& name, const HostArray& got, const std::vector<double>& want, double bound) {
    OutputError e;
    e.name = name;
    e.bound = bound;
    double diff2 = 0, ref2 = 0;
    for (std::size_t x = 0; x < want.size(); ++x) {
        const double d = double(got.at(std::int64_t(x))) - want[x];
        // NaN propagates into max_abs through the comparison below failing.
        e.max_abs = std::isnan(d) || std::fabs(d) > e.max_abs ? std::fabs(d) : e.max_abs;
        diff2 += d * d;
        ref2 += want[x] * want[x];
    }
    e.relative = ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
    e.pass = e.relative <= bound;  // false for NaN
    return e;
}

// lse [B, Hq, Sq] (varlen [Hq, Tq]) against the reference's [row][h]; -inf rows must match exactly.
OutputError compare_lse(const HostArray& got, const std::vector<double>& want, bool varlen) {
    OutputError e;
    e.name = "lse";
    e.bound = kLseBound;
    const std::int64_t hq = varlen ? got.shape[0] : got.shape[1];
    const std::int64_t sq = varlen ? got.shape[1] : got.shape[2];
    double diff2 = 0, ref2 = 0;
    for (std::int64_t row = 0; row < std::int64_t(want.size()) / std::max<std::int64_t>(hq, 1); ++row)
        for (std::int64_t h = 0; h < hq; ++h) {
            const std::int64_t b = varlen ? 0 : row / sq, i = varlen ? row : row % sq;
            const double g = got.at((b * hq + h) * sq + i), w = want[std::size_t(row * hq + h)];
            double d;
            if (std::isinf(w) || std::isinf(g))
                d = (std::isinf(w) && std::isinf(g) && (w < 0) == (g < 0)) ? 0 : INFINITY;
            else
                d = g - w;
            e.max_abs = std::isnan(d) || std::fabs(d) > e.max_abs ? std::fabs(d) : e.max_abs;
            if (std::isfinite(w)) {
                diff2 += d * d;
                ref2 += w * w;
            }
        }
    e.relative = ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
    e.pass = e.max_abs <= kLseBound;
    return e;
}

}  // namespace

bool CheckReport::pass() const {
    for (const OutputError& e : errors)
        if (!e.pass) return false;
    return !errors.empty();
}

double relative_bound(DType dtype) { return dtype == DType::fp16 ? 5e-3 : 2e-2; }

Status check_against_reference(const Inputs& in, const Outputs& out, const Mask& band, std::optional<float> scale,
                               CheckReport& report) {
    BackwardArgs a;
    a.q = read_view(in.q);
    a.k = read_view(in.k);
    a.v = read_view(in.v);
    a.out = read_view(out.out);
    a.lse = read_view(out.lse);
    a.dout = read_view(in.dout);
    a.dq = read_view(out.dq);
    a.dk = read_view(out.dk);
    a.dv = read_view(out.dv);
    a.cu_seqlens_q = read_view(in.cu_seqlens_q);
    a.cu_seqlens_k = read_view(in.cu_seqlens_k);
    a.mask = band;
    a.scale = scale;
    core::AttnParams p;
    Status s;
    if (in.has_dout()) {
        s = api::fill_backward_params(a, {}, p);
    } else {
        ForwardArgs f;
        f.q = a.q;
        f.k = a.k;
        f.v = a.v;
        f.out = a.out;
        f.lse = a.lse;
        f.cu_seqlens_q = a.cu_seqlens_q;
        f.cu_seqlens_k = a.cu_seqlens_k;
        f.mask = band;
        f.scale = scale;
        s = api::fill_forward_params(f, {}, p);
    }
    if (!s.ok()) return s;
    p.host_mask = &band;
    cpu::Reference ref = cpu::reference_forward(p);
    const double bound = relative_bound(in.q.dtype);
    report.errors.clear();
    report.errors.push_back(compare("out", out.out, ref.out, bound));
    report.errors.push_back(compare_lse(out.lse, ref.lse, in.varlen()));
    if (in.has_dout()) {
        cpu::reference_backward(p, ref);
        report.errors.push_back(compare("dq", out.dq, ref.dq, bound));
        report.errors.push_back(compare("dk", out.dk, ref.dk, bound));
        report.errors.push_back(compare("dv", out.dv, ref.dv, bound));
    }
    return Status::success();
}

void print_report(std::ostream& os, const CheckReport& r) {
    char line[160];
    std::snprintf(line, sizeof line, "  %-6s %12s %12s %12s\n", "output", "max |err|", "rel err", "bound");
    os << line;
    for (const OutputError& e : r.errors) {
        std::snprintf(line, sizeof line, "  %-6s %12.3e %12.3e %12.1e%s  %s\n", e.name.c_str(), e.max_abs, e.relative,
                      e.bound, e.name == "lse" ? " abs" : " rel", e.pass ? "ok" : "FAIL");
        os << line;
    }
    os << (r.pass() ? "PASS" : "FAIL") << "\n";
}

}  // namespace ccattn::cli
