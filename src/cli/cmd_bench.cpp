// `ccattn bench`: times one case (warm-up, then the median of N calls); FLOPs count visible pairs only.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>

#include "cli/case_runner.h"
#include "cli/commands.h"
#include "cli/device_memory.h"
#include "cli/option_names.h"
#include "cli/session.h"

namespace ccattn::cli {
namespace {

// A progress line on stderr once a run has taken a few seconds: rewritten in place on a
// terminal, one line every few seconds otherwise (logs).
class ProgressLine {
public:
    void update(const char* direction, int call, int calls) {
        const auto now = Clock::now();
        if (now - start_ < std::chrono::seconds(2)) return;
        if (!tty_ && now - last_ < std::chrono::seconds(5) && call != calls) return;
        const double seconds = std::chrono::duration<double>(now - start_).count();
        std::fprintf(stderr, "%sccattn bench: %s %d/%d, %.0f s%s", tty_ ? "\r" : "", direction, call, calls, seconds,
                     tty_ ? "   " : "\n");
        shown_ = true;
        last_ = now;
    }
    ~ProgressLine() {
        if (shown_ && tty_) std::fputc('\n', stderr);
    }

private:
    using Clock = std::chrono::steady_clock;
    Clock::time_point start_ = Clock::now(), last_ = start_;
    bool tty_ = isatty(STDERR_FILENO) != 0;
    bool shown_ = false;
};

std::string case_id(const CaseSpec& c) {
    std::string id = (c.varlen_docs > 0 ? "varlen" + std::to_string(c.varlen_docs) : "B" + std::to_string(c.batch)) +
                     "_Sq" + std::to_string(c.seqlen_q) + "_Sk" + std::to_string(c.seqlen_k) + "_Hq" +
                     std::to_string(c.heads_q) + "_Hkv" + std::to_string(c.heads_kv) + "_D" + std::to_string(c.dim_qk);
    if (c.dim_v != c.dim_qk) id += "-" + std::to_string(c.dim_v);
    if (c.band.causal) id += "_causal";
    if (c.band.compress_factor != 1) id += "_cf" + std::to_string(c.band.compress_factor);
    if (c.band.diag_offset) id += "_delta" + std::to_string(*c.band.diag_offset);
    if (c.band.window_left) id += "_w" + std::to_string(*c.band.window_left);
    if (c.kv_cache_page_size == 0) id += "_kvcache";
    if (c.kv_cache_page_size > 0) id += "_paged" + std::to_string(c.kv_cache_page_size);
    if (c.num_splits > 0) id += "_splits" + std::to_string(c.num_splits);
    return id;
}

std::string utc_now() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

Status append_csv(const std::string& path, const CaseSpec& c, Backend backend, const char* direction, double ms,
                  double tflops, std::int64_t pairs) {
    const bool fresh = !std::ifstream(path).good() || std::ifstream(path, std::ios::ate).tellg() == 0;
    std::ofstream f(path, std::ios::app);
    if (!f) return Status::invalid("--csv", "cannot append to '" + path + "'");
    if (fresh)
        f << "date,case,direction,backend,mask,dtype,batch,seqlen_q,seqlen_k,heads_q,heads_kv,dim_qk,dim_v,causal,"
             "compress_factor,diag_offset,window_left,visible_pairs,ms,tflops\n";
    f << utc_now() << "," << case_id(c) << "," << direction << "," << backend_name(backend) << ","
      << mask_name(c) << "," << dtype_name(c.dtype) << ","
      << (c.varlen_docs > 0 ? c.varlen_docs : c.batch) << "," << c.seqlen_q << "," << c.seqlen_k << "," << c.heads_q
      << "," << c.heads_kv << "," << c.dim_qk << "," << c.dim_v << "," << (c.band.causal ? 1 : 0) << ","
      << c.band.compress_factor << "," << (c.band.diag_offset ? std::to_string(*c.band.diag_offset) : "default") << ","
      << (c.band.window_left ? std::to_string(*c.band.window_left) : "none") << "," << pairs << "," << ms << ","
      << tflops << "\n";
    f.close();  // a row reaches the disk at close: its result counts
    return f.fail() ? Status::invalid("--csv", "failed writing '" + path + "': " + std::strerror(errno))
                    : Status::success();
}

}  // namespace

int bench_command(int argc, char** argv) {
    std::vector<OptionSpec> specs = case_options(true);
    specs.push_back({"iters", "N", "timed calls per direction (default 10); the median is reported"});
    specs.push_back({"warmup", "N", "untimed calls first (default 2)"});
    specs.push_back({"csv", "FILE", "append one row per direction (header when the file is new)"});
    Options o(specs);
    Status s = o.parse(argc, argv, 2);
    if (!s.ok()) return report_error("bench", s);
    CaseSpec spec;
    spec.seqlen_q = 4096;
    spec.seqlen_k = 4096;
    spec.heads_q = 16;
    spec.heads_kv = 16;
    spec.dim_qk = 128;
    spec.dim_v = 128;
    if (o.help_requested()) {
        std::cout << "usage: ccattn bench [options]\n\n"
                     "Times a random case (default: B 1, Sq 4096, Sk 4096, Hq 16, Hkv 16, D 128, bf16, no mask):\n"
                     "warm-up calls, then the median of --iters calls (CUDA events on the GPU, wall clock on the\n"
                     "CPU). TFLOP/s counts visible pairs only: forward 2*pairs*Hq*(Dqk + Dv), backward\n"
                     "2*pairs*Hq*(3*Dqk + 2*Dv).\n\noptions:\n"
                  << o.help_text();
        return 0;
    }
    int iters = 10, warmup = 2;
    if (!(s = read_case(o, spec)).ok()) return report_error("bench", s);
    if (!(s = o.integer("iters", 1, 100000, iters)).ok()) return report_error("bench", s);
    if (!(s = o.integer("warmup", 0, 100000, warmup)).ok()) return report_error("bench", s);

    const Backend backend = resolve_backend(spec.backend);
    const std::string device = backend == Backend::cuda ? " (" + device_name() + ")" : "";
    std::cout << "ccattn bench: " << describe_shape(spec) << "\n"
              << "  mask: " << describe_mask(spec) << "\n"
              << "  backend " << backend_name(backend) << device << ", " << warmup << " warm-up + " << iters
              << " timed calls" << std::endl;
    Timing t;
    {
        ProgressLine progress;
        s = time_case(
            spec, warmup, iters, [&](const char* d, int call, int calls) { progress.update(d, call, calls); }, t);
    }
    if (!s.ok()) return report_error("bench", with_option_names(s, TensorSource::sizes));
    char line[200];
    std::snprintf(line, sizeof line, "  visible pairs per head: %lld (%.1f%% of Sq x Sk)\n", (long long)t.pairs,
                  t.all_pairs > 0 ? 100.0 * double(t.pairs) / double(t.all_pairs) : 0.0);
    std::cout << line;
    struct Row {
        const char* direction;
        const std::vector<double>& times;
        double flops;
    };
    const char* backward = spec.deterministic ? "backward_deterministic" : "backward";  // CSV rows tell them apart
    const Row rows[] = {{"forward", t.forward_ms, t.forward_flops}, {backward, t.backward_ms, t.backward_flops}};
    for (const Row& r : rows) {
        if (r.times.empty()) continue;
        const double ms = median(r.times);
        const double tflops = ms > 0 ? r.flops / (ms * 1e-3) / 1e12 : 0;
        std::snprintf(line, sizeof line, "  %-9s %10.3f ms (median of %zu, min %.3f)  %9.3f TFLOP/s\n", r.direction, ms,
                      r.times.size(), *std::min_element(r.times.begin(), r.times.end()), tflops);
        std::cout << line;
        if (o.has("csv") && !(s = append_csv(o.text("csv", ""), spec, backend, r.direction, ms, tflops, t.pairs)).ok())
            return report_error("bench", s);
    }
    return 0;
}

}  // namespace ccattn::cli
