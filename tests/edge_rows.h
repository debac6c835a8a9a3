// Band tensor edges for tests (CPU and GPU suites): per query row of every sequence, the lo and hi
// of random monotone bands, or of the built-in band. Sequences are given by their (Sq, Sk); rows
// of all sequences are concatenated, the layout of [B, Sq] (equal lengths) and of [Tq] (varlen).
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "api/validate.h"
#include "ccattn/mask.h"
#include "core/band.h"

namespace ccattn::test {

struct EdgeRows {
    std::vector<std::int64_t> lo, hi;
};

using SequenceLengths = std::vector<std::pair<std::int64_t, std::int64_t>>;  // (Sq, Sk) per sequence

// The built-in band of each sequence, row by row (default offsets per sequence).
inline EdgeRows builtin_edge_rows(const SequenceLengths& seqs, const Mask& band) {
    const core::BandSpec spec = api::band_spec(band);
    EdgeRows e;
    for (const auto& [sq, sk] : seqs) {
        const core::CompressedBand cb = spec.for_sequence(sq, sk);
        for (std::int64_t i = 0; i < sq; ++i) {
            e.lo.push_back(cb.lo(i));
            e.hi.push_back(cb.hi(i));
        }
    }
    return e;
}

// Random non-decreasing edges: mostly small steps, some larger than a 64-key tile (`jump` keys at
// least), values below 0 and above Sk (clamped), rows with lo >= hi (empty) and rows with lo <= 0,
// hi >= Sk (every key).
inline EdgeRows random_edge_rows(const SequenceLengths& seqs, std::uint64_t seed, std::int64_t jump = 65) {
    std::mt19937_64 rng(seed);
    auto uniform = [&](std::int64_t lo, std::int64_t hi) {  // in [lo, hi]
        return lo + std::int64_t(rng() % std::uint64_t(hi - lo + 1));
    };
    EdgeRows e;
    for (const auto& seq : seqs) {
        const std::int64_t sq = seq.first, sk = seq.second;  // named: the lambda below captures sk
        const std::int64_t rate = sk / (sq > 0 ? sq : 1) + 1;  // hi reaches about Sk by the last row
        // A jump past a tile (and maybe past Sk), else a small step.
        auto step = [&](int jump_percent, std::int64_t small) {
            return uniform(0, 99) < jump_percent ? uniform(jump, jump + sk / 2) : uniform(0, small);
        };
        std::int64_t lo = uniform(-40, 10), hi = uniform(-10, 30);
        for (std::int64_t i = 0; i < sq; ++i) {
            e.lo.push_back(lo);
            e.hi.push_back(hi);
            lo += uniform(0, 1) ? step(2, rate) : 0;
            hi += step(3, 2 * rate);
        }
    }
    return e;
}

}  // namespace ccattn::test
