// `ccattn demo`: the main job. On a GPU: a long compressed-KV case timed forward and backward with
// each mask mechanism, and a smaller GPU case checked against the fp64 reference. Without one: a
// small case on the CPU backend, timed and checked.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>

#include "cli/case_runner.h"
#include "cli/commands.h"
#include "cli/device_memory.h"
#include "cli/session.h"

namespace ccattn::cli {
namespace {

CaseSpec compressed_case(std::int64_t sq, std::int64_t sk, int hq, int hkv, int dim, Backend backend) {
    CaseSpec c;
    c.batch = 1;
    c.seqlen_q = sq;
    c.seqlen_k = sk;
    c.heads_q = hq;
    c.heads_kv = hkv;
    c.dim_qk = c.dim_v = dim;
    c.band = Mask::band(true, 4);  // query i sees compressed key j iff 4j <= i
    c.backend = backend;
    c.backward = true;
    c.seed = 2024;
    return c;
}

// One row of the mechanism table: median ms and FLOP rate of the forward and backward.
void print_timing(const char* label, const Timing& t, bool tera) {
    const double unit = tera ? 1e12 : 1e9;
    const double fwd = median(t.forward_ms), bwd = median(t.backward_ms);
    std::printf("  %-13s %12.3f %12.1f   %12.3f %12.1f\n", label, fwd, t.forward_flops / (fwd * 1e-3) / unit, bwd,
                t.backward_flops / (bwd * 1e-3) / unit);
}

void print_case(const CaseSpec& c, const Timing* t) {
    std::printf("  %s\n  mask: %s\n", describe_shape(c).c_str(), describe_band(c.band).c_str());
    if (t != nullptr)
        std::printf("  visible pairs per head: %lld of %lld (%.1f%%)\n", (long long)t->pairs, (long long)t->all_pairs,
                    t->all_pairs > 0 ? 100.0 * double(t->pairs) / double(t->all_pairs) : 0.0);
}

int check_and_print(const CaseSpec& c) {
    CheckReport report;
    const Status s = check_case(c, report);
    if (!s.ok()) return report_error("demo", s);
    print_report(std::cout, report);
    return report.pass() ? 0 : kExitFail;
}

// Times the case with each mask mechanism (all compute the same band); the native one must run.
int time_mechanisms(CaseSpec c, int warmup, int iters, bool tera) {
    const Mechanism mechanisms[] = {Mechanism::native, Mechanism::mask_mod, Mechanism::block_sparse};
    for (Mechanism m : mechanisms) {
        c.mechanism = m;
        Timing t;
        const Status s = time_case(c, warmup, iters, nullptr, t);
        if (!s.ok() && m == Mechanism::native) return report_error("demo", s);
        if (!s.ok()) {  // the comparison mechanisms are optional: say why one did not run
            std::printf("  %-13s not run: %s\n", mechanism_name(m), s.to_string().c_str());
            continue;
        }
        if (m == Mechanism::native) {
            print_case(c, &t);
            const char* rate = tera ? "TFLOP/s" : "GFLOP/s";
            std::printf("  %-13s %12s %12s   %12s %12s\n", "mechanism", "forward ms", rate, "backward ms", rate);
        }
        print_timing(mechanism_name(m), t, tera);
    }
    return 0;
}

int gpu_demo() {
    std::printf("device: %s (CUDA backend)\n\n", device_name().c_str());
    std::printf("timing, forward and backward (3 warm-up + median of 10 calls, CUDA events):\n");
    if (int rc = time_mechanisms(compressed_case(16384, 4096, 16, 16, 128, Backend::cuda), 3, 10, true)) return rc;
    const CaseSpec small = compressed_case(2048, 512, 4, 1, 128, Backend::cuda);
    std::printf("\ncorrectness on the GPU, against the fp64 CPU reference (same bf16 inputs):\n");
    print_case(small, nullptr);
    return check_and_print(small);
}

int cpu_demo() {
    const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    std::printf("device: CPU backend, %u threads (no CUDA device)\n\n", threads);
    const CaseSpec c = compressed_case(2048, 512, 8, 2, 64, Backend::cpu);
    std::printf("timing, forward and backward (1 warm-up + median of 3 calls, wall clock):\n");
    if (int rc = time_mechanisms(c, 1, 3, false)) return rc;
    std::printf("\ncorrectness, against the fp64 reference (same bf16 inputs):\n");
    return check_and_print(c);
}

}  // namespace

int demo_command(int argc, char** argv) {
    Options o({});
    const Status s = o.parse(argc, argv, 2);
    if (!s.ok()) return report_error("demo", s);
    if (o.help_requested()) {
        std::cout << "usage: ccattn demo\n\n"
                     "With a CUDA device: B 1, Sq 16384, Sk 4096 (cf 4), Hq 16, Hkv 16, D 128, bf16, causal,\n"
                     "forward and backward timed with the native band, mask_mod and block-sparse lists, then a\n"
                     "smaller GPU case checked against the fp64 reference. Without one: B 1, Sq 2048, Sk 512\n"
                     "(cf 4), Hq 8, Hkv 2, D 64 on the CPU backend, timed and checked. Exit code 1 on FAIL.\n";
        return 0;
    }
    std::printf("ccattn demo: compressed-KV attention, query i sees compressed key j iff j*cf <= i + delta\n");
    return cuda_available() ? gpu_demo() : cpu_demo();
}

}  // namespace ccattn::cli
