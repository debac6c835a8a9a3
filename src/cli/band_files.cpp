#include "cli/band_files.h"

#include <cstring>
#include <string>

#include "cli/npy.h"
#include "core/band_tensors.h"
#include "core/schedule.h"

namespace ccattn::cli {
namespace {

Status read_edge(const Options& o, const std::string& option, HostArray& out) {
    NpyArray a;
    Status s = read_npy(o.text(option, ""), "--" + option, a);
    if (!s.ok()) return s;
    if (a.type != NpyType::int32 && a.type != NpyType::int64)
        return Status::invalid("--" + option, "must be int32 or int64");
    const std::vector<std::int64_t> values = a.to_int64();
    out = HostArray::zeros(DType::int64, a.shape);
    std::memcpy(out.bytes.data(), values.data(), values.size() * sizeof(std::int64_t));
    return Status::success();
}

core::RowTensor row_tensor(const HostArray& a, bool varlen) {
    return {a.bytes.data(), true, varlen ? 0 : (a.shape.size() == 2 ? a.shape[1] : 0), 1};
}

}  // namespace

Mask BandFiles::mask() const {
    auto view = [](const HostArray& a) { return a.view(const_cast<unsigned char*>(a.bytes.data()), Device::cpu); };
    return Mask::band_tensors(view(lo), view(hi), validate);
}

std::vector<OptionSpec> band_file_options() {
    return {
        {"band-lo", "LO.npy", "band tensors: row i sees keys [lo, hi); int32/int64 [B, Sq] (varlen [Tq]); with --band-hi"},
        {"band-hi", "HI.npy", "band tensors: the rows' hi, like --band-lo (replaces the band options)"},
        {"band-unchecked", "", "band tensors: skip the check that lo and hi never decrease (the caller guarantees it)"},
    };
}

Status read_band_files(const Options& o, BandFiles& files) {
    if (!o.has("band-lo") && !o.has("band-hi")) {
        if (o.flag("band-unchecked")) return Status::invalid("--band-unchecked", "needs --band-lo and --band-hi");
        return Status::success();
    }
    files.validate = !o.flag("band-unchecked");
    if (!o.has("band-lo") || !o.has("band-hi"))
        return Status::invalid(o.has("band-lo") ? "--band-hi" : "--band-lo", "band tensors need both --band-lo and --band-hi");
    for (const char* band : {"causal", "compress-factor", "diag-offset", "window-left"})
        if (o.has(band))
            return Status::invalid("--band-lo", std::string("band tensors replace the band options; drop --") + band);
    if (o.has("mask") && o.text("mask", "") != "native")
        return Status::invalid("--band-lo", "band tensors run with --mask native only");
    Status s = read_edge(o, "band-lo", files.lo);
    return s.ok() ? read_edge(o, "band-hi", files.hi) : s;
}

std::int64_t visible_pairs(const BandFiles& files, const Inputs& in) {
    const bool varlen = in.varlen();
    const core::BandRows rows{row_tensor(files.lo, varlen), row_tensor(files.hi, varlen)};
    const std::int64_t batch = varlen ? in.cu_seqlens_q.numel() - 1 : in.q.shape[0];
    std::int64_t pairs = 0;
    for (std::int64_t b = 0; b < batch; ++b) {
        const std::int32_t* cq = in.cu_seqlens_q.int32_data();
        const std::int32_t* ck = in.cu_seqlens_k.int32_data();
        const std::int64_t row0 = varlen ? cq[b] : 0;
        const std::int64_t sq = varlen ? cq[b + 1] - cq[b] : in.q.shape[1];
        const std::int64_t sk = varlen ? ck[b + 1] - ck[b] : in.k.shape[1];
        pairs += core::visible_pairs(core::TensorBand{rows, int(b), row0, sk}, sq);
    }
    return pairs;
}

}  // namespace ccattn::cli
