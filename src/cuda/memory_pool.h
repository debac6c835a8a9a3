// Workspace memory of the CUDA backend comes from cudaMallocAsync on the call's stream (no host
// synchronization; CUDA graphs capture it as memory nodes). The device's default pool unmaps freed
// memory at every synchronization while its release threshold is 0 (the default), so a call that
// follows one would map its workspace again: ~1 ms for the backward's GB-sized fp32 dQ accumulator
// at training shapes. Every workspace user raises the threshold once per device (decision 16).
#pragma once

#include <atomic>
#include <cstdint>

#include <cuda_runtime.h>

#include "ccattn/status.h"
#include "cuda/cuda_status.h"

namespace ccattn::cuda {

inline Status retain_pool_memory(int device) {
    static std::atomic<bool> done[64];
    if (device < 0 || device >= 64 || done[device].load()) return Status::success();
    cudaMemPool_t pool;
    Status s = cuda_status(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
    std::uint64_t keep = ~std::uint64_t(0);
    if (s.ok()) s = cuda_status(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "cudaMemPoolSetAttribute");
    if (s.ok()) done[device].store(true);
    return s;
}

// The same for the calling thread's current device, for callers that have no other use for it.
inline Status retain_pool_memory() {
    int device = 0;
    if (Status s = cuda_status(cudaGetDevice(&device), "cudaGetDevice"); !s.ok()) return s;
    return retain_pool_memory(device);
}

}  // namespace ccattn::cuda
