// Dynamic persistent scheduling of the Hopper forward. A CTA's first work tile is its blockIdx.x;
// each later one is the next index of a global counter (zeroed before the launch), drawn when the
// CTA's producer starts loading its current tile. So the CTAs that finish early take the remaining
// tiles, in the scheduler's longest-first order, whatever the band makes a tile cost: a static
// round-robin leaves the most loaded CTA ~6% above the mean under a causal band and ~27% under
// chunked attention, where the tile lengths repeat per chunk (bench/NOTES.md v29).
// The producer thread describes each tile once (an Entry: its index and whatever the consumers need
// of it) in a ring of kSlots shared-memory entries, each guarded by an mbarrier pair: full (the
// producer's arrival) and empty (one arrival per consumer thread once it is done with the tile). The
// consumers read the entry in place for the whole tile instead of describing it again in every
// thread (bench/NOTES.md v35). Past the last tile every role receives an index >= the tile count,
// which ends its loop.
#pragma once

#include <cstdint>

#include <cutlass/arch/barrier.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

namespace ccattn::sm90 {

template <class Entry, int kSlots, int kConsumerThreads>
struct TileQueue {
    using State = cutlass::PipelineState<kSlots>;

    struct Storage {
        Entry entry[kSlots];
        cutlass::arch::ClusterBarrier::ValueType full[kSlots];
        cutlass::arch::ClusterBarrier::ValueType empty[kSlots];
    };

    // One thread, before the CTA-wide barrier that publishes barrier initialization.
    CUTLASS_DEVICE static void init(Storage& q) {
        for (int s = 0; s < kSlots; ++s) {
            cutlass::arch::ClusterBarrier::init(&q.full[s], 1);
            cutlass::arch::ClusterBarrier::init(&q.empty[s], kConsumerThreads);
        }
    }

    // The producer's state: a fresh empty barrier passes parity 1 at once, so every slot starts free.
    CUTLASS_DEVICE static State producer_start() { return State{0, 1u, 0}; }

    // The tile after `current` (the producer thread only; the atomic's latency overlaps the current
    // tile's loads, its result is first used by the next entry). Without a counter: the static
    // round-robin current + gridDim.x, for launches whose tiles cost alike (split-KV shares) or that
    // give each CTA one tile.
    CUTLASS_DEVICE static std::int64_t draw(unsigned long long* counter, std::int64_t current) {
        if (counter == nullptr) return current + gridDim.x;
        return std::int64_t(gridDim.x) + std::int64_t(atomicAdd(counter, 1ull));
    }

    // The producer: the next entry to fill, once the consumers are done with its last tile.
    CUTLASS_DEVICE static Entry& acquire(Storage& q, const State& state) {
        cutlass::arch::ClusterBarrier::wait(&q.empty[state.index()], state.phase());
        return q.entry[state.index()];
    }
    // The producer: the filled entry goes to the consumers (the arrival releases its stores).
    CUTLASS_DEVICE static void publish(Storage& q, State& state) {
        cutlass::arch::ClusterBarrier::arrive(&q.full[state.index()]);
        ++state;
    }

    // Every consumer thread: the next tile's entry, valid until release.
    CUTLASS_DEVICE static const Entry& wait(Storage& q, const State& state) {
        cutlass::arch::ClusterBarrier::wait(&q.full[state.index()], state.phase());
        return q.entry[state.index()];
    }
    CUTLASS_DEVICE static void release(Storage& q, State& state) {
        cutlass::arch::ClusterBarrier::arrive(&q.empty[state.index()]);
        ++state;
    }
};

}  // namespace ccattn::sm90
