// Band types for core's tile schedule, one per sequence: the built-in compressed band, the user's
// CustomBand wrapped to look the same, and band tensors, so all run through the same templated code.
#pragma once

#include <cstdint>

#include "ccattn/mask.h"
#include "core/band.h"
#include "core/params.h"

namespace ccattn::cpu {

// The user's callables for sequence b, clamped to [0, Sk] as the native band is. They are called
// once per query row and tile bound, never per element, possibly from several threads at once.
struct CustomBandView {
    const CustomBand* band = nullptr;
    int b = 0;
    std::int64_t seqlen_k = 0;
    std::int64_t lo(std::int64_t i) const { return core::clamp(band->lo(b, i), 0, seqlen_k); }
    std::int64_t hi(std::int64_t i) const { return core::clamp(band->hi(b, i), 0, seqlen_k); }
};

// Band of sequence b: the native band with that sequence's lengths (default offsets per sequence).
struct NativeBands {
    const core::AttnParams* p;
    core::CompressedBand operator()(int, const core::Sequence& s) const {
        return p->band.for_sequence(s.seqlen_q, s.seqlen_k);
    }
};

struct CustomBands {
    const core::AttnParams* p;
    CustomBandView operator()(int b, const core::Sequence& s) const {
        return {&p->host_mask->custom_band, b, s.seqlen_k};
    }
};

struct TensorBands {
    const core::AttnParams* p;
    core::TensorBand operator()(int b, const core::Sequence& s) const { return core::tensor_band(*p, b, s); }
};

}  // namespace ccattn::cpu
