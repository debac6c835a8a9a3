// A synthetic attention case as `check`, `bench` and `demo` describe it: sizes, the band mask, the
// mask mechanism that runs it, dtype, backend; random inputs for it; its visible pairs and FLOPs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ccattn/block_sparse.h"
#include "ccattn/ccattn.h"
#include "cli/band_files.h"
#include "cli/host_array.h"
#include "cli/options.h"

namespace ccattn::cli {

enum class Mechanism { native, mask_mod, block_sparse };
const char* mechanism_name(Mechanism m);

// The band options shared by every command: --causal, --compress-factor, --diag-offset, --window-left.
std::vector<OptionSpec> band_options();
Status read_band(const Options& o, Mask& band);
// "causal, cf 4, delta 0 (default), no window"
std::string describe_band(const Mask& band);

struct CaseSpec {
    int batch = 1;
    std::int64_t seqlen_q = 512, seqlen_k = 512;
    int heads_q = 8, heads_kv = 8, dim_qk = 64, dim_v = 64;
    int varlen_docs = 0;  // > 0: that many sequences of random lengths up to seqlen_q / seqlen_k
    std::vector<std::pair<std::int64_t, std::int64_t>> documents;  // varlen with these (Sq, Sk) lengths
    Mask band = Mask::none();
    BandFiles band_files;  // --band-lo / --band-hi: band tensors instead of `band`
    Mechanism mechanism = Mechanism::native;
    std::int64_t sparse_tile_m = 0, sparse_tile_n = 0;  // 0: the backend's (CUDA: its kernel's tiles), CPU 128
    DType dtype = DType::bf16;
    Backend backend = Backend::automatic;
    bool backward = false;
    bool deterministic = false;  // --deterministic: BackwardArgs::deterministic
    std::uint64_t seed = 1;
    int num_threads = 0;
    std::optional<float> scale;
    // --kv-cache: run attention_with_kvcache over a cache holding k / v (cache_seqlens = Sk): -1 off,
    // 0 a contiguous cache, N pages of N rows in random order. --num-splits: split-KV CTAs (0 auto).
    std::int64_t kv_cache_page_size = -1;
    int num_splits = 0;
};

// Options for a case; `mechanism` adds --mask, the block-sparse tile sizes and the band files.
std::vector<OptionSpec> case_options(bool mechanism);
// Reads the options over the defaults already in `spec`.
Status read_case(const Options& o, CaseSpec& spec);
// "native", "mask_mod", "block_sparse", or "band_tensors" with band files.
const char* mask_name(const CaseSpec& spec);
// "causal, cf 4, ..." or the band files
std::string describe_mask(const CaseSpec& spec);
// "B 1, Sq 2048, Sk 512, Hq 8, Hkv 2, D 64/64, bf16" (+ varlen lengths)
std::string describe_shape(const CaseSpec& spec);

// Random inputs (normal, rounded to the dtype), with dout when spec.backward; the sequence lengths
// for varlen come from the same seed.
Inputs make_inputs(const CaseSpec& spec);

// The mask that runs the case: band tensors from the band files, the band itself, a mask_mod predicate equal to it (with the band
// fields set too: the CUDA backend evaluates those per element), or block-sparse lists built from
// the band. Owns the lists; not copyable once built, as the mask views them.
class CaseMask {
public:
    CaseMask() = default;
    CaseMask(const CaseMask&) = delete;
    CaseMask& operator=(const CaseMask&) = delete;
    Status build(const CaseSpec& spec, const Inputs& in);
    const Mask& mask() const { return mask_; }

private:
    BlockSparseLists lists_;
    Mask mask_;
};

// Visible (query, key) pairs summed over sequences, for one head; all_pairs: sum of Sq * Sk.
std::int64_t visible_pairs(const Mask& band, const Inputs& in);
std::int64_t all_pairs(const Inputs& in);
// 2 * pairs * Hq * (Dqk + Dv) forward; 2 * pairs * Hq * (3 Dqk + 2 Dv) backward.
double forward_flops(std::int64_t pairs, const Inputs& in);
double backward_flops(std::int64_t pairs, const Inputs& in);

}  // namespace ccattn::cli
