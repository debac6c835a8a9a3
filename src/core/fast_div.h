// Division by a divisor that is fixed for a call (the GQA pack, the tile scheduler's extents), as a
// multiply-high and a shift: the host computes the multiplier once, and a division on the device
// costs two instructions and a select where an integer division is a ~15-instruction sequence
// around a reciprocal. Granlund & Montgomery's round-up method, as in CUTLASS's FastDivmod: with
// L = ceil(log2 d) and m = ceil(2^(31 + L) / d) < 2^32, floor(n / d) = floor(n m / 2^(31 + L)) for every
// n < 2^31, since n (m d - 2^(31 + L)) < 2^31 d <= 2^(31 + L).
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace ccattn::core {

struct FastDiv {
    std::uint32_t divisor = 1;
    std::uint32_t multiplier = 0;  // unused for divisor 1
    std::uint32_t shift = 0;       // L - 1

    FastDiv() = default;
    // d in [1, 2^31); computed once per call, on the host (a 64-bit division).
    explicit FastDiv(std::uint32_t d) : divisor(d) {
        if (d <= 1) return;
        std::uint32_t log2 = 0;
        while ((std::uint64_t(1) << log2) < d) ++log2;
        multiplier = std::uint32_t(((std::uint64_t(1) << (31 + log2)) + d - 1) / d);
        shift = log2 - 1;
    }

    // floor(n / divisor) for n in [0, 2^31).
    CCATTN_HD std::uint32_t div(std::uint32_t n) const {
#if defined(__CUDA_ARCH__)
        const std::uint32_t high = __umulhi(n, multiplier);
#else
        const std::uint32_t high = std::uint32_t((std::uint64_t(n) * multiplier) >> 32);
#endif
        return divisor == 1 ? n : high >> shift;
    }
    CCATTN_HD std::uint32_t mod(std::uint32_t n) const { return n - div(n) * divisor; }
};

}  // namespace ccattn::core
