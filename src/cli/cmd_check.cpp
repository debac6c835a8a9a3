// `ccattn check`: one random case on a backend against the fp64 reference.
#include <iostream>

#include "cli/case_runner.h"
#include "cli/commands.h"
#include "cli/option_names.h"
#include "cli/session.h"

namespace ccattn::cli {

int check_command(int argc, char** argv) {
    Options o(case_options(true));
    Status s = o.parse(argc, argv, 2);
    if (!s.ok()) return report_error("check", s);
    CaseSpec spec;
    spec.batch = 2;
    spec.seqlen_q = 256;
    spec.seqlen_k = 256;
    spec.heads_q = 4;
    spec.heads_kv = 2;
    if (o.help_requested()) {
        std::cout << "usage: ccattn check [options]\n\n"
                     "Runs a random case (default: B 2, Sq 256, Sk 256, Hq 4, Hkv 2, D 64, bf16, no mask) and\n"
                     "compares out, lse (and with --bwd dq, dk, dv) with the fp64 reference on the same rounded\n"
                     "inputs. Prints max |err| and ||x - ref|| / ||ref|| per output; exit code 1 on FAIL\n"
                     "(bound: relative 2e-2 for bf16, 5e-3 for fp16; lse absolute 1e-3).\n\noptions:\n"
                  << o.help_text();
        return 0;
    }
    if (!(s = read_case(o, spec)).ok()) return report_error("check", s);
    std::cout << "ccattn check: " << describe_shape(spec) << "\n"
              << "  mask: " << describe_mask(spec) << "\n"
              << "  backend " << backend_name(resolve_backend(spec.backend)) << ", seed " << spec.seed
              << (!spec.backward        ? ", forward"
                  : spec.deterministic ? ", forward and deterministic backward"
                                       : ", forward and backward")
              << "\n";
    CheckReport report;
    if (!(s = check_case(spec, report)).ok()) return report_error("check", with_option_names(s, TensorSource::sizes));
    print_report(std::cout, report);
    return report.pass() ? 0 : kExitFail;
}

}  // namespace ccattn::cli
