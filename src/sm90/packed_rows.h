// The packed rows one thread visits in a warp group's slice of a work tile: r0, r0 + kStep,
// r0 + 2 kStep, ... as (query position, query head), without a division per row. Packed rows are
// query-major with `pack` heads per query (WorkInfo), so a step adds kStep / pack queries and
// kStep % pack heads, with at most one carry. The Q gather and an empty tile's zero rows visit
// eight rows a thread per work tile; with a 64-bit division each (~35 instructions and a branch)
// those row addresses were most of the instructions of a work tile that sees one or two kv tiles.
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace ccattn::sm90 {

template <int kStep>
struct PackedRowWalk {
    std::uint32_t query = 0;  // of the current row
    std::uint32_t lane = 0;   // its head within the pack: query head head0 + lane
    std::uint32_t pack = 1, step_q = 0, step_lane = 0;

    // Packed rows stay below 2^31 (sm90::unsupported_reason), so 32-bit arithmetic holds them.
    template <class Info>
    CCATTN_HD PackedRowWalk(const Info& info, int r0) : pack(info.pack_div.divisor) {
        const std::uint32_t u = std::uint32_t(info.row_begin + r0);
        query = info.pack_div.div(u);
        lane = u - query * pack;
        step_q = info.pack_div.div(std::uint32_t(kStep));
        step_lane = std::uint32_t(kStep) - step_q * pack;
    }

    CCATTN_HD void next() {
        query += step_q;
        lane += step_lane;
        if (lane >= pack) {
            lane -= pack;
            ++query;
        }
    }
};

}  // namespace ccattn::sm90
