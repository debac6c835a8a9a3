// Turns in a fixed order among the CTAs that add into one fp32 accumulator (the deterministic
// backward, sm80::AddOrder), shared by both GPU kernel families. A turn counter is an int32 in global
// memory, zeroed before the launch, that counts the adders done so far: the adder of rank r waits until
// it reads r, adds, and increments it. One thread of the adding group waits and passes; the group's
// barriers order its other threads' additions between the two.
//
// Deadlock freedom rests on two facts the callers keep: an adder only ever waits on CTAs of lower
// linear block index (which the GPU launches first, so they are resident or done while it spins), and
// every rank below it belongs to a CTA that takes its turn (also when it has nothing to add).
#pragma once

namespace ccattn::gpu {

// Spins until *turn == rank (ld.acquire: the additions of the turns before are visible after it),
// backing off so that spinning CTAs take little memory bandwidth from the adder they wait for; the
// cap bounds the delay a sleeping waiter adds after its turn has come (turns come every q-tile).
__device__ __forceinline__ void wait_turn(const int* turn, int rank) {
    unsigned backoff = 32;
    for (;;) {
        int seen;
        asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(seen) : "l"(turn) : "memory");
        if (seen == rank) return;
        __nanosleep(backoff);
        backoff = backoff < 256 ? 2 * backoff : backoff;
    }
}

// Ends this adder's turn. The caller's additions must be complete first (atomics: __threadfence and
// the group barrier; bulk reductions: waited for), so that the release covers them.
__device__ __forceinline__ void pass_turn(int* turn) {
    asm volatile("red.release.gpu.global.add.s32 [%0], 1;\n" ::"l"(turn) : "memory");
}

}  // namespace ccattn::gpu
