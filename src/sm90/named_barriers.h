// Named barriers (bar.sync ids) of the Hopper forward, by name. CUTLASS offsets user ids past the
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

}  // namespace ccattn::sm90
