#include "cli/case_runner.h"

#include <algorithm>

#include "cli/session.h"

namespace ccattn::cli {

Status check_case(const CaseSpec& spec, CheckReport& report) {
    const Inputs in = make_inputs(spec);
    CaseMask mask;
    Status s = mask.build(spec, in);
    if (!s.ok()) return s;
    Session session;
    if (!(s = session.open(in, mask.mask(), resolve_backend(spec.backend), spec.scale, spec.num_threads,
                                 spec.deterministic, spec.kv_cache_page_size, spec.num_splits)).ok())
        return s;
    if (!(s = session.forward()).ok()) return s;
    if (spec.backward && !(s = session.backward()).ok()) return s;
    Outputs out;
    if (!(s = session.fetch(out)).ok()) return s;
    // Band tensors are their own reference mask; other mechanisms are checked against the band.
    return check_against_reference(in, out, spec.band_files.given() ? mask.mask() : spec.band, spec.scale, report);
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

Status time_case(const CaseSpec& spec, int warmup, int iters, const Progress& progress, Timing& t) {
    const Inputs in = make_inputs(spec);
    CaseMask mask;
    Status s = mask.build(spec, in);
    if (!s.ok()) return s;
    Session session;
    if (!(s = session.open(in, mask.mask(), resolve_backend(spec.backend), spec.scale, spec.num_threads,
                                 spec.deterministic, spec.kv_cache_page_size, spec.num_splits)).ok())
        return s;
    t = Timing{};
    for (int w = 0; w < warmup; ++w)
        if (!(s = session.forward()).ok()) return s;
    for (int i = 0; i < iters; ++i) {
        double ms = 0;
        if (!(s = session.timed_forward(ms)).ok()) return s;
        t.forward_ms.push_back(ms);
        if (progress) progress("forward", i + 1, iters);
    }
    // Counted after the forward ran: by then the library has checked band files against the inputs.
    t.pairs = spec.band_files.given() ? visible_pairs(spec.band_files, in) : visible_pairs(spec.band, in);
    t.all_pairs = all_pairs(in);
    t.forward_flops = forward_flops(t.pairs, in);
    t.backward_flops = backward_flops(t.pairs, in);
    if (!spec.backward) return Status::success();
    // The backward reads the out and lse the forward calls above left (iters >= 1).
    for (int w = 0; w < warmup; ++w)
        if (!(s = session.backward()).ok()) return s;
    for (int i = 0; i < iters; ++i) {
        double ms = 0;
        if (!(s = session.timed_backward(ms)).ok()) return s;
        t.backward_ms.push_back(ms);
        if (progress) progress("backward", i + 1, iters);
    }
    return Status::success();
}

}  // namespace ccattn::cli
