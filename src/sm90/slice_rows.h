// How a consumer warp group's 128 threads cover the 16-byte chunks of its slice of a work tile (the
// Q gather into shared memory, an empty tile's zero output rows): eight threads a row, each taking
// every eighth chunk, so a thread's rows lie 16 apart and one PackedRowWalk gives their (query,
// head) without a division per row.
#pragma once

#include <cstdint>

#include <cute/config.hpp>

#include "sm90/packed_rows.h"

namespace ccattn::sm90 {

template <int kRows, int kChunks>
struct SliceRows {
    static constexpr int kRowThreads = 8, kRowStep = 128 / kRowThreads;
    static constexpr int kChunksPerThread = kChunks / kRowThreads;
    static_assert(kChunks % kRowThreads == 0 && kRows % kRowStep == 0);

    // f(r, query, head) for each of this thread's rows r of the slice (its first row is packed row
    // slice_row0 of the tile), with that row's query position and query head.
    template <class Info, class F>
    CUTE_DEVICE static void for_each_row(const Info& info, int slice_row0, int thread_in_group, F&& f) {
        const int r0 = thread_in_group / kRowThreads;
        PackedRowWalk<kRowStep> walk(info, slice_row0 + r0);
        CUTE_UNROLL
        for (int k = 0; k < kRows / kRowStep; ++k, walk.next())
            f(r0 + k * kRowStep, std::int64_t(walk.query), info.head0 + int(walk.lane));
    }

    // The thread's j-th chunk of each of its rows, j < kChunksPerThread.
    CUTE_DEVICE static int chunk(int thread_in_group, int j) { return thread_in_group % kRowThreads + j * kRowThreads; }
};

}  // namespace ccattn::sm90
