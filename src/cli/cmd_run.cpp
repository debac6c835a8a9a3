// `ccattn run`: attention on tensors from .npy files, results written as float32 .npy files.
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "cli/band_files.h"
#include "cli/case_spec.h"
#include "cli/commands.h"
#include "cli/npy.h"
#include "cli/option_names.h"
#include "cli/options.h"
#include "cli/session.h"

namespace ccattn::cli {
namespace {

std::vector<OptionSpec> run_options() {
    std::vector<OptionSpec> o = {
        {"q", "Q.npy", "queries [B, Sq, Hq, D] (or [Tq, Hq, D] with cu_seqlens), float32 or float16"},
        {"k", "K.npy", "keys [B, Sk, Hkv, D] (or [Tk, Hkv, D])"},
        {"v", "V.npy", "values [B, Sk, Hkv, Dv] (or [Tk, Hkv, Dv])"},
        {"dout", "DO.npy", "gradient of out: also run the backward (dq, dk, dv)"},
        {"cu-seqlens-q", "CQ.npy", "varlen: int32 [B + 1] query offsets"},
        {"cu-seqlens-k", "CK.npy", "varlen: int32 [B + 1] key offsets"},
    };
    for (OptionSpec& b : band_options()) o.push_back(b);
    for (OptionSpec& f : band_file_options()) o.push_back(f);
    std::vector<OptionSpec> rest = {
        {"scale", "X", "softmax scale (default 1/sqrt(D))"},
        {"dtype", "bf16|fp16", "inputs are rounded to this dtype before computing (default bf16)"},
        {"backend", "auto|cpu|cuda", "default auto: cuda when a device is usable"},
        {"threads", "N", "CPU backend threads (default: all)"},
        {"deterministic", "", "backward: a fixed order of the GPU's fp32 additions (bitwise-identical runs)"},
        {"out-dir", "DIR", "where out.npy, lse.npy (and dq.npy, dk.npy, dv.npy) go, as float32"},
    };
    o.insert(o.end(), rest.begin(), rest.end());
    return o;
}

// A float tensor of rank 3 or 4, rounded to dtype.
Status read_tensor(const Options& o, const std::string& option, DType dtype, HostArray& out) {
    NpyArray a;
    Status s = read_npy(o.text(option, ""), "--" + option, a);
    if (!s.ok()) return s;
    if (a.type == NpyType::int32) return Status::invalid("--" + option, "must be float32 or float16, got int32");
    if (a.shape.size() != 3 && a.shape.size() != 4)
        return Status::invalid("--" + option,
                               "must have 4 dimensions [B, S, H, D] (or 3 [T, H, D] with cu_seqlens), got " +
                                   std::to_string(a.shape.size()));
    out = HostArray::from_floats(dtype, a.shape, a.to_float());
    return Status::success();
}

Status read_offsets(const Options& o, const std::string& option, HostArray& out) {
    if (!o.has(option)) return Status::success();
    NpyArray a;
    Status s = read_npy(o.text(option, ""), "--" + option, a);
    if (!s.ok()) return s;
    if (a.type != NpyType::int32)
        return Status::invalid("--" + option, std::string("must be int32") +
                                                  (a.type == NpyType::int64 ? ": save arr.astype('<i4')" : ""));
    if (a.shape.size() != 1) return Status::invalid("--" + option, "must be a vector [B + 1]");
    out = HostArray::from_int32(a.shape, a.to_int32());
    return Status::success();
}

std::string dims(const HostArray& a) {
    std::string s = "[";
    for (std::size_t d = 0; d < a.shape.size(); ++d) s += (d ? ", " : "") + std::to_string(a.shape[d]);
    return s + "]";
}

struct Output {
    const char* name;  // written as <name>.npy
    const HostArray* array;
};

// Every output under a temporary name in `dir` first, then renamed into place: a failed run leaves no
// new file (and the outputs of an earlier run as they were). A name that is a link is replaced, not
// followed.
Status write_outputs(const std::filesystem::path& dir, const std::vector<Output>& files) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return Status::invalid("--out-dir", "cannot create '" + dir.string() + "': " + ec.message());
    std::vector<std::pair<fs::path, fs::path>> moves;  // temporary, final
    for (const Output& f : files) {
        const fs::path final_path = dir / (std::string(f.name) + ".npy");
        if (fs::is_directory(final_path, ec))
            return Status::invalid("--out-dir", "cannot write '" + final_path.string() + "': it is a directory");
        moves.emplace_back(dir / ("." + std::string(f.name) + ".npy." + std::to_string(getpid()) + ".tmp"), final_path);
    }
    auto discard = [&](std::size_t from) {
        for (std::size_t m = from; m < moves.size(); ++m) fs::remove(moves[m].first, ec);
    };
    for (std::size_t m = 0; m < files.size(); ++m) {
        const Status s = write_npy(moves[m].first.string(), files[m].array->shape, files[m].array->to_floats());
        if (!s.ok()) {
            discard(0);
            return Status::invalid("--out-dir", s.message + " (for " + moves[m].second.filename().string() + ")");
        }
    }
    for (std::size_t m = 0; m < moves.size(); ++m) {
        fs::rename(moves[m].first, moves[m].second, ec);
        if (ec) {
            discard(m);
            return Status::invalid("--out-dir", "cannot write '" + moves[m].second.string() + "': " + ec.message());
        }
    }
    return Status::success();
}

Status run(const Options& o, std::ostream& os) {
    for (const char* required : {"q", "k", "v", "out-dir"})
        if (!o.has(required)) return Status::invalid(std::string("--") + required, "is required");
    int dtype_index = 0;
    Status s = o.choice("dtype", {"bf16", "fp16"}, dtype_index);
    if (!s.ok()) return s;
    const DType dtype = dtype_index == 1 ? DType::fp16 : DType::bf16;
    int backend_index = 0, threads = 0;
    if (!(s = o.choice("backend", {"auto", "cpu", "cuda"}, backend_index)).ok()) return s;
    if (!(s = o.integer("threads", 0, 4096, threads)).ok()) return s;
    std::optional<float> scale;
    if (o.has("scale")) {
        float x = 0;
        if (!(s = o.real("scale", x)).ok()) return s;
        scale = x;
    }
    Mask band;
    if (!(s = read_band(o, band)).ok()) return s;
    BandFiles band_files;
    if (!(s = read_band_files(o, band_files)).ok()) return s;
    const Mask mask = band_files.given() ? band_files.mask() : band;

    Inputs in;
    if (!(s = read_tensor(o, "q", dtype, in.q)).ok()) return s;
    if (!(s = read_tensor(o, "k", dtype, in.k)).ok()) return s;
    if (!(s = read_tensor(o, "v", dtype, in.v)).ok()) return s;
    if (o.has("dout") && !(s = read_tensor(o, "dout", dtype, in.dout)).ok()) return s;
    if (!(s = read_offsets(o, "cu-seqlens-q", in.cu_seqlens_q)).ok()) return s;
    if (!(s = read_offsets(o, "cu-seqlens-k", in.cu_seqlens_k)).ok()) return s;

    const Backend backend = resolve_backend(Backend(backend_index));
    Session session;
    if (!(s = session.open(in, mask, backend, scale, threads, o.flag("deterministic"))).ok()) return s;
    if (!(s = session.forward()).ok()) return s;
    if (in.has_dout() && !(s = session.backward()).ok()) return s;
    Outputs out;
    if (!(s = session.fetch(out)).ok()) return s;

    std::vector<Output> files = {{"out", &out.out}, {"lse", &out.lse}};
    if (in.has_dout()) files.insert(files.end(), {{"dq", &out.dq}, {"dk", &out.dk}, {"dv", &out.dv}});
    os << "ccattn run: " << backend_name(backend) << " backend, " << dtype_name(dtype) << ", q " << dims(in.q) << ", k "
       << dims(in.k) << ", v " << dims(in.v) << (in.varlen() ? " (varlen)" : "") << "\n"
       << "  mask: " << (band_files.given() ? "band tensors from --band-lo, --band-hi" : describe_band(band)) << "\n";
    if (!(s = write_outputs(o.text("out-dir", ""), files)).ok()) return s;
    for (const Output& f : files)
        os << "  wrote " << (std::filesystem::path(o.text("out-dir", "")) / (std::string(f.name) + ".npy")).string()
           << " " << dims(*f.array) << " float32\n";
    return Status::success();
}

}  // namespace

int run_command(int argc, char** argv) {
    Options o(run_options());
    Status s = o.parse(argc, argv, 2);
    if (!s.ok()) return report_error("run", s);
    if (o.help_requested()) {
        std::cout << "usage: ccattn run --q Q.npy --k K.npy --v V.npy --out-dir DIR [options]\n\n"
                     "Attention on tensors from .npy files (C order, little endian). Inputs are rounded to\n"
                     "--dtype first; outputs are float32 .npy files: out [like q, with v's head dim],\n"
                     "lse [B, Hq, Sq] (varlen [Hq, Tq]), and with --dout also dq, dk, dv.\n\noptions:\n"
                  << o.help_text();
        return 0;
    }
    s = run(o, std::cout);
    return s.ok() ? 0 : report_error("run", with_option_names(s, TensorSource::files));
}

}  // namespace ccattn::cli
