// Outputs against the fp64 reference (cpu::reference_forward / reference_backward) on the same
// rounded inputs: max abs error and ||x - ref|| / ||ref|| per output, PASS within the dtype's bound.
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "ccattn/ccattn.h"
#include "cli/host_array.h"

namespace ccattn::cli {

struct OutputError {
    std::string name;  // out, lse, dq, dk, dv
    double max_abs = 0, relative = 0;
    double bound = 0;  // on `relative` (lse: on max_abs)
    bool pass = false;
};

struct CheckReport {
    std::vector<OutputError> errors;
    bool pass() const;
};

// Relative bound for 16-bit outputs with fp32 accumulation: bf16 2e-2, fp16 5e-3. lse (fp32): 1e-3
// absolute; empty rows must match exactly (out 0, lse -inf).
double relative_bound(DType dtype);

// `band` is the mask every mechanism must reproduce; gradients are compared when in has dout.
Status check_against_reference(const Inputs& in, const Outputs& out, const Mask& band, std::optional<float> scale,
                               CheckReport& report);

void print_report(std::ostream& os, const CheckReport& report);

}  // namespace ccattn::cli
