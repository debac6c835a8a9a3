// Running a synthetic case: once against the fp64 reference (check, demo), or timed (bench, demo).
#pragma once

#include <functional>
#include <vector>

#include "cli/case_spec.h"
#include "cli/compare.h"

namespace ccattn::cli {

// Runs the forward (and backward when spec.backward) on the resolved backend and compares every
// output with the reference of spec.band.
Status check_case(const CaseSpec& spec, CheckReport& report);

struct Timing {
    std::vector<double> forward_ms, backward_ms;  // one entry per timed call
    std::int64_t pairs = 0;                       // visible pairs per head, summed over sequences
    std::int64_t all_pairs = 0;                   // Sq * Sk summed over sequences
    double forward_flops = 0, backward_flops = 0;
};
double median(std::vector<double> v);

// Called after every timed call with (direction, call number from 1, calls).
using Progress = std::function<void(const char* direction, int call, int calls)>;

// `warmup` untimed calls, then `iters` (>= 1) timed ones, for the forward and (spec.backward) the backward.
Status time_case(const CaseSpec& spec, int warmup, int iters, const Progress& progress, Timing& timing);

}  // namespace ccattn::cli
