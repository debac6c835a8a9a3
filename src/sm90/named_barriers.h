// Named barriers (bar.sync ids) of the Hopper kernels, by name. CUTLASS offsets user ids past the
// ids it reserves, so these start at 0.
#pragma once

#include <cstdint>

#include <cutlass/arch/barrier.h>

namespace ccattn::sm90 {

enum class NamedBarrier : std::uint32_t {
    // One per consumer warp group (id + warp group index): orders the group's own shared-memory
    // slice between Q load, wgmma reads, O staging and the global stores.
    ConsumerWarpGroup0 = 0,
    // Ping-pong (one per consumer warp group, id + index): warp group k may issue its matmuls once
    // warp group k - 1 (cyclically) has issued its own.
    WarpSchedulerTurn0 = 3,
    // Backward: the producer warp group publishes a stage's q-tile to its own threads.
    BackwardProducer = 6,
    // Backward: both consumer warp groups have written their halves of dSᵀ for the dQ product.
    BackwardDsReady = 7,
};

// Synchronizes the 128 threads of consumer warp group `wg` (0-based among consumers).
CUTLASS_DEVICE void warp_group_sync(int wg) {
    cutlass::arch::NamedBarrier::sync(128, std::uint32_t(NamedBarrier::ConsumerWarpGroup0) + wg);
}

// Ping-pong between consumer warp groups. Each turn barrier counts its owner's sync and its
// predecessor's arrive; consumer 0 arrives once on its own barrier at start to take the first turn.
CUTLASS_DEVICE void take_turn(int wg) {
    cutlass::arch::NamedBarrier::sync(256, std::uint32_t(NamedBarrier::WarpSchedulerTurn0) + wg);
}

CUTLASS_DEVICE void pass_turn(int wg, int warp_groups) {
    cutlass::arch::NamedBarrier::arrive(256, std::uint32_t(NamedBarrier::WarpSchedulerTurn0) + (wg + 1) % warp_groups);
}

CUTLASS_DEVICE void take_first_turn() {
    cutlass::arch::NamedBarrier::arrive(256, std::uint32_t(NamedBarrier::WarpSchedulerTurn0));
}

// Backward: the 128 producer threads.
CUTLASS_DEVICE void producer_sync() {
    cutlass::arch::NamedBarrier::sync(128, std::uint32_t(NamedBarrier::BackwardProducer));
}

// Backward: the 256 consumer threads, once dSᵀ of this q-tile is in shared memory.
CUTLASS_DEVICE void ds_ready_sync() {
    cutlass::arch::NamedBarrier::sync(256, std::uint32_t(NamedBarrier::BackwardDsReady));
}

}  // namespace ccattn::sm90
