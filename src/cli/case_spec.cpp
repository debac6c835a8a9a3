#include "cli/case_spec.h"

#include <cmath>
#include <limits>
#include <random>

#include "api/validate.h"
#include "core/band.h"
#include "core/schedule.h"

namespace ccattn::cli {
namespace {

constexpr std::int64_t kMaxLength = (std::int64_t(1) << 31) - 1;  // cu_seqlens are int32

// Per-sequence (Sq, Sk) of the inputs.
std::vector<std::pair<std::int64_t, std::int64_t>> sequence_lengths(const Inputs& in) {
    std::vector<std::pair<std::int64_t, std::int64_t>> lens;
    if (in.varlen()) {
        const std::int32_t* cq = in.cu_seqlens_q.int32_data();
        const std::int32_t* ck = in.cu_seqlens_k.int32_data();
        for (std::int64_t b = 0; b + 1 < in.cu_seqlens_q.numel(); ++b)
            lens.emplace_back(cq[b + 1] - cq[b], ck[b + 1] - ck[b]);
    } else {
        for (std::int64_t b = 0; b < in.q.shape[0]; ++b) lens.emplace_back(in.q.shape[1], in.k.shape[1]);
    }
    return lens;
}

}  // namespace

const char* mechanism_name(Mechanism m) {
    switch (m) {
        case Mechanism::native: return "native";
        case Mechanism::mask_mod: return "mask_mod";
        case Mechanism::block_sparse: return "block_sparse";
    }
    return "?";
}

std::vector<OptionSpec> band_options() {
    return {
        {"causal", "", "causal band: key j visible to query i iff j*cf <= i + delta"},
        {"compress-factor", "N", "cf: keys per compressed token (default 1)"},
        {"diag-offset", "N", "delta (default Sk - Sq for cf = 1, 0 for cf > 1)"},
        {"window-left", "N", "also hide keys left of floor((i + delta)/cf) - N"},
    };
}

Status read_band(const Options& o, Mask& band) {
    std::int64_t cf = band.compress_factor;
    Status s = o.integer("compress-factor", 1, (std::int64_t(1) << 31) - 1, cf);  // the library's bounds
    if (!s.ok()) return s;
    std::optional<std::int64_t> delta = band.diag_offset, window = band.window_left;
    if (o.has("diag-offset")) {
        std::int64_t d = 0;
        if (!(s = o.integer("diag-offset", 1 - (std::int64_t(1) << 62), (std::int64_t(1) << 62) - 1, d)).ok()) return s;
        delta = d;
    }
    if (o.has("window-left")) {
        std::int64_t w = 0;
        if (!(s = o.integer("window-left", 0, (std::int64_t(1) << 31) - 1, w)).ok()) return s;
        window = w;
    }
    band = Mask::band(band.causal || o.flag("causal"), cf, delta, window);
    return Status::success();
}

std::string describe_band(const Mask& band) {
    if (!band.causal && !band.window_left) return "no mask (every key visible)";
    std::string s = band.causal ? "causal" : "left window only";
    s += ", cf " + std::to_string(band.compress_factor);
    if (band.diag_offset)
        s += ", delta " + std::to_string(*band.diag_offset);
    else
        s += band.compress_factor == 1 ? ", delta Sk - Sq (default)" : ", delta 0 (default)";
    s += band.window_left ? ", window " + std::to_string(*band.window_left) : ", no window";
    return s;
}

std::vector<OptionSpec> case_options(bool mechanism) {
    std::vector<OptionSpec> o = {
        {"batch", "N", "sequences"},
        {"seqlen-q", "N", "queries per sequence"},
        {"seqlen-k", "N", "keys per sequence"},
        {"heads-q", "N", "query heads"},
        {"heads-kv", "N", "key/value heads (divides heads-q)"},
        {"dim-qk", "N", "head dim of q and k"},
        {"dim-v", "N", "head dim of v"},
        {"varlen", "N", "N sequences of random lengths up to seqlen-q / seqlen-k (replaces --batch)"},
        {"documents", "SQ:SK,...", "varlen sequences of these query:key lengths (replaces --batch)"},
    };
    for (OptionSpec& b : band_options()) o.push_back(b);
    std::vector<OptionSpec> rest = {
        {"scale", "X", "softmax scale (default 1/sqrt(dim-qk))"},
        {"dtype", "bf16|fp16", "compute dtype (default bf16)"},
        {"backend", "auto|cpu|cuda", "default auto: cuda when a device is usable"},
        {"bwd", "", "also run the backward"},
        {"deterministic", "", "backward: a fixed order of the GPU's fp32 additions (bitwise-identical runs)"},
        {"seed", "N", "random seed (default 1)"},
        {"threads", "N", "CPU backend threads (default: all)"},
        {"kv-cache", "PAGE", "forward through attention_with_kvcache, k / v in a cache (0: contiguous, N: pages "
                             "of N rows in random order)"},
        {"num-splits", "N", "CUDA split-KV CTAs per sequence (default 0: heuristic; 1: no split)"},
    };
    o.insert(o.end(), rest.begin(), rest.end());
    if (mechanism) {
        o.push_back({"mask", "native|mask_mod|block_sparse", "mechanism that runs the band (default native)"});
        o.push_back({"sparse-tile-m", "N", "block_sparse: queries per q-tile (default: the CUDA kernel's, 128 on CPU)"});
        for (OptionSpec& f : band_file_options()) o.push_back(f);
        o.push_back({"sparse-tile-n", "N", "block_sparse: keys per kv-tile (default: the CUDA kernel's, 128 on CPU)"});
    }
    return o;
}

// One document length of --documents: digits only, at most kMaxLength.
Status document_length(const std::string& part, const Status& bad, std::int64_t& len) {
    if (part.empty() || part.find_first_not_of("0123456789") != std::string::npos) return bad;
    if (!parse_int64(part, len) || len > kMaxLength)
        return Status::invalid("--documents", "length " + part + " is above " + std::to_string(kMaxLength));
    return Status::success();
}

// --documents 11611:724,5943:370: explicit varlen lengths (the benchmark's documents).
Status read_documents(const Options& o, CaseSpec& c) {
    if (!o.has("documents")) return Status::success();
    const std::string text = o.text("documents", "");
    const Status bad = Status::invalid("--documents", "expected SQ:SK[,SQ:SK...], got '" + text + "'");
    c.documents.clear();
    std::int64_t total_q = 0, total_k = 0;
    for (std::size_t at = 0; at <= text.size();) {
        std::size_t end = text.find(',', at);
        if (end == std::string::npos) end = text.size();
        const std::string item = text.substr(at, end - at);
        const std::size_t colon = item.find(':');
        if (colon == std::string::npos || item.find(':', colon + 1) != std::string::npos) return bad;
        std::int64_t sq = 0, sk = 0;
        Status s = document_length(item.substr(0, colon), bad, sq);
        if (s.ok()) s = document_length(item.substr(colon + 1), bad, sk);
        if (!s.ok()) return s;
        total_q += sq;
        total_k += sk;
        if (total_q > kMaxLength || total_k > kMaxLength)
            return Status::invalid("--documents", "total length above " + std::to_string(kMaxLength));
        c.documents.push_back({sq, sk});
        at = end + 1;
    }
    c.varlen_docs = int(c.documents.size());
    return Status::success();
}

Status read_case(const Options& o, CaseSpec& c) {
    Status s;
    struct Count {
        const char* name;
        int min;
        int* field;
    };
    const Count counts[] = {{"batch", 0, &c.batch},   {"heads-q", 1, &c.heads_q}, {"heads-kv", 1, &c.heads_kv},
                            {"dim-qk", 1, &c.dim_qk}, {"dim-v", 1, &c.dim_v},     {"varlen", 0, &c.varlen_docs}};
    for (const Count& n : counts)
        if (!(s = o.integer(n.name, n.min, 1 << 20, *n.field)).ok()) return s;
    if (c.heads_q % c.heads_kv != 0)
        return Status::invalid("--heads-kv", "must divide --heads-q (" + std::to_string(c.heads_q) + "), got " +
                                                 std::to_string(c.heads_kv));
    if (!(s = read_documents(o, c)).ok()) return s;
    if (!(s = o.integer("seqlen-q", 0, kMaxLength, c.seqlen_q)).ok()) return s;
    if (!(s = o.integer("seqlen-k", 0, kMaxLength, c.seqlen_k)).ok()) return s;
    if (!(s = read_band(o, c.band)).ok()) return s;
    if (o.has("scale")) {
        float x = 0;
        if (!(s = o.real("scale", x)).ok()) return s;
        c.scale = x;
    }
    int dtype = c.dtype == DType::fp16 ? 1 : 0;
    if (!(s = o.choice("dtype", {"bf16", "fp16"}, dtype)).ok()) return s;
    c.dtype = dtype == 1 ? DType::fp16 : DType::bf16;
    int backend = int(c.backend);
    if (!(s = o.choice("backend", {"auto", "cpu", "cuda"}, backend)).ok()) return s;
    c.backend = Backend(backend);
    c.backward = c.backward || o.flag("bwd");
    c.deterministic = c.deterministic || o.flag("deterministic");
    std::int64_t seed = std::int64_t(c.seed);
    if (!(s = o.integer("seed", 0, std::numeric_limits<std::int64_t>::max(), seed)).ok()) return s;
    c.seed = std::uint64_t(seed);
    if (!(s = o.integer("threads", 0, 4096, c.num_threads)).ok()) return s;
    if (!(s = o.integer("num-splits", 0, 256, c.num_splits)).ok()) return s;
    if (!(s = o.integer("kv-cache", 0, 256, c.kv_cache_page_size)).ok()) return s;
    if (o.has("kv-cache") && (c.backward || c.varlen_docs > 0))
        return Status::invalid("--kv-cache", "runs fixed-length forwards only (no --bwd, --varlen, --documents)");
    int mechanism = int(c.mechanism);
    if (!(s = o.choice("mask", {"native", "mask_mod", "block_sparse"}, mechanism)).ok()) return s;
    c.mechanism = Mechanism(mechanism);
    if (!(s = o.integer("sparse-tile-m", 1, std::int64_t(1) << 20, c.sparse_tile_m)).ok()) return s;
    if (!(s = o.integer("sparse-tile-n", 1, std::int64_t(1) << 20, c.sparse_tile_n)).ok()) return s;
    return read_band_files(o, c.band_files);
}

const char* mask_name(const CaseSpec& c) {
    return c.band_files.given() ? "band_tensors" : mechanism_name(c.mechanism);
}

std::string describe_mask(const CaseSpec& c) {
    if (c.band_files.given()) return "band tensors from --band-lo, --band-hi";
    return describe_band(c.band) + " (" + mechanism_name(c.mechanism) + ")";
}

std::string describe_shape(const CaseSpec& c) {
    std::int64_t total_q = 0, total_k = 0;
    for (const auto& [sq, sk] : c.documents) total_q += sq, total_k += sk;
    std::string s = !c.documents.empty() ? "varlen " + std::to_string(c.documents.size()) + " documents, Tq " +
                                               std::to_string(total_q) + ", Tk " + std::to_string(total_k)
                    : c.varlen_docs > 0 ? "varlen " + std::to_string(c.varlen_docs) +
                                            " sequences, Sq <= " + std::to_string(c.seqlen_q) +
                                            ", Sk <= " + std::to_string(c.seqlen_k)
                                      : "B " + std::to_string(c.batch) + ", Sq " + std::to_string(c.seqlen_q) +
                                            ", Sk " + std::to_string(c.seqlen_k);
    s += ", Hq " + std::to_string(c.heads_q) + ", Hkv " + std::to_string(c.heads_kv) + ", D " +
         std::to_string(c.dim_qk) + (c.dim_v == c.dim_qk ? "" : "/" + std::to_string(c.dim_v)) + ", " +
         dtype_name(c.dtype);
    return s;
}

Inputs make_inputs(const CaseSpec& c) {
    std::mt19937_64 rng(c.seed);
    Inputs in;
    std::int64_t rows_q = std::int64_t(c.batch) * c.seqlen_q, rows_k = std::int64_t(c.batch) * c.seqlen_k;
    if (c.varlen_docs > 0) {
        // Lengths given, or up to seqlen_q with keys in the same proportion (a compressed sequence
        // per document).
        std::uniform_int_distribution<std::int64_t> len(std::min<std::int64_t>(1, c.seqlen_q), c.seqlen_q);
        std::vector<std::int32_t> cq = {0}, ck = {0};
        for (int b = 0; b < c.varlen_docs; ++b) {
            std::int64_t lq, lk;
            if (!c.documents.empty()) {
                lq = c.documents[std::size_t(b)].first;
                lk = c.documents[std::size_t(b)].second;
            } else {
                lq = len(rng);
                lk = c.seqlen_q > 0 ? std::llround(double(lq) * double(c.seqlen_k) / double(c.seqlen_q)) : c.seqlen_k;
            }
            cq.push_back(std::int32_t(std::min<std::int64_t>(cq.back() + lq, kMaxLength)));
            ck.push_back(std::int32_t(std::min<std::int64_t>(ck.back() + lk, kMaxLength)));
        }
        rows_q = cq.back();
        rows_k = ck.back();
        in.cu_seqlens_q = HostArray::from_int32({std::int64_t(cq.size())}, cq);
        in.cu_seqlens_k = HostArray::from_int32({std::int64_t(ck.size())}, ck);
    }
    auto shape = [&](std::int64_t rows, std::int64_t seqlen, int heads, int dim) -> std::vector<std::int64_t> {
        if (c.varlen_docs > 0) return {rows, heads, dim};
        return {c.batch, seqlen, heads, dim};
    };
    std::uint64_t stream = c.seed * 4;  // one stream per tensor
    auto random = [&](std::vector<std::int64_t> dims) { return HostArray::random_normal(c.dtype, dims, ++stream); };
    in.q = random(shape(rows_q, c.seqlen_q, c.heads_q, c.dim_qk));
    in.k = random(shape(rows_k, c.seqlen_k, c.heads_kv, c.dim_qk));
    in.v = random(shape(rows_k, c.seqlen_k, c.heads_kv, c.dim_v));
    if (c.backward) in.dout = random(shape(rows_q, c.seqlen_q, c.heads_q, c.dim_v));
    return in;
}

Status CaseMask::build(const CaseSpec& c, const Inputs& in) {
    mask_ = c.band_files.given() ? c.band_files.mask() : c.band;
    if (c.band_files.given()) return Status::success();
    switch (c.mechanism) {
        case Mechanism::native: return Status::success();
        case Mechanism::mask_mod: {
            std::vector<core::CompressedBand> bands;
            for (const auto& [sq, sk] : sequence_lengths(in)) bands.push_back(api::band_spec(c.band).for_sequence(sq, sk));
            mask_.kind = MaskKind::mask_mod;
            mask_.mask_mod = [bands](int b, int, std::int64_t i, std::int64_t j) {
                return core::visible(bands[std::size_t(b)], i, j);
            };
            return Status::success();
        }
        case Mechanism::block_sparse: {
            BlockSparseLists::Shape shape;
            shape.batch = in.varlen() ? int(in.cu_seqlens_q.numel() - 1) : int(in.q.shape[0]);
            shape.seqlen_q = in.varlen() ? 0 : in.q.shape[1];
            shape.seqlen_k = in.varlen() ? 0 : in.k.shape[1];
            if (in.varlen()) {
                shape.cu_seqlens_q = in.cu_seqlens_q.int32_data();
                shape.cu_seqlens_k = in.cu_seqlens_k.int32_data();
            }
            shape.tile_m = c.sparse_tile_m;
            shape.tile_n = c.sparse_tile_n;
            const bool on_cuda = c.backend == Backend::cuda || (c.backend == Backend::automatic && cuda_available());
            Status s;
            if (shape.tile_m == 0 || shape.tile_n == 0) {
                std::int64_t tm = 128, tn = 128;  // CPU: any tiles work; 128 as FlexAttention's default
                if (on_cuda && !(s = cuda_block_sparse_tiles(c.dim_qk, c.dim_v, c.dtype, tm, tn)).ok()) return s;
                shape.tile_m = shape.tile_m ? shape.tile_m : tm;
                shape.tile_n = shape.tile_n ? shape.tile_n : tn;
            }
            s = BlockSparseLists::from_band(c.band, shape, lists_);
            if (!s.ok()) return s;
            mask_ = lists_.mask();
            // The CUDA backend masks partial tiles with the band fields.
            mask_.causal = c.band.causal;
            mask_.compress_factor = c.band.compress_factor;
            mask_.diag_offset = c.band.diag_offset;
            mask_.window_left = c.band.window_left;
            return Status::success();
        }
    }
    return Status::invalid("--mask", "unknown mechanism");
}

std::int64_t visible_pairs(const Mask& band, const Inputs& in) {
    std::int64_t pairs = 0;
    const core::BandSpec spec = api::band_spec(band);
    for (const auto& [sq, sk] : sequence_lengths(in)) pairs += core::visible_pairs(spec.for_sequence(sq, sk), sq);
    return pairs;
}

std::int64_t all_pairs(const Inputs& in) {
    std::int64_t pairs = 0;
    for (const auto& [sq, sk] : sequence_lengths(in)) pairs += sq * sk;
    return pairs;
}

double forward_flops(std::int64_t pairs, const Inputs& in) {
    const int r = in.varlen() ? 0 : 1;
    const double hq = double(in.q.shape[std::size_t(r + 1)]);
    const double dqk = double(in.q.shape.back()), dv = double(in.v.shape.back());
    return 2.0 * double(pairs) * hq * (dqk + dv);
}

double backward_flops(std::int64_t pairs, const Inputs& in) {
    const int r = in.varlen() ? 0 : 1;
    const double hq = double(in.q.shape[std::size_t(r + 1)]);
    const double dqk = double(in.q.shape.back()), dv = double(in.v.shape.back());
    return 2.0 * double(pairs) * hq * (3 * dqk + 2 * dv);
}

}  // namespace ccattn::cli
