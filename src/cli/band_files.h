// --band-lo / --band-hi: a mask given as band tensors (Mask::band_tensors, docs/band_tensors.md),
// read from int32 or int64 .npy files for run, check and bench. Held as int64 host arrays.
#pragma once

#include <cstdint>
#include <vector>

#include "ccattn/mask.h"
#include "cli/host_array.h"
#include "cli/options.h"

namespace ccattn::cli {

struct BandFiles {
    HostArray lo, hi;  // int64 [B, Sq] or [Tq]; empty shapes when not given
    bool validate = true;  // --band-unchecked clears it (BandTensors::validate)
    bool given() const { return !lo.empty_shape(); }
    // Band tensors viewing lo and hi in host memory, valid while this object is.
    Mask mask() const;
};

std::vector<OptionSpec> band_file_options();
// Both files or neither; they replace the band options and run with --mask native only. Shapes are
// checked by the library (against q, as mask.lo / mask.hi).
Status read_band_files(const Options& o, BandFiles& files);
// Visible (query, key) pairs per head summed over sequences, for the FLOP count.
std::int64_t visible_pairs(const BandFiles& files, const Inputs& in);

}  // namespace ccattn::cli
