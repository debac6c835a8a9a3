// Device memory and GPU timing for the CLI, through the CUDA runtime. Built from
// device_memory_cuda.cpp when ccattn has CUDA, from device_memory_host.cpp otherwise (every call
// then reports backend_unavailable), so the rest of the CLI is plain C++.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include "ccattn/status.h"

namespace ccattn::cli {

// The name of device 0 ("" when there is none).
std::string device_name();

// One device allocation, freed on destruction.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& o) noexcept { std::swap(ptr_, o.ptr_); }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        std::swap(ptr_, o.ptr_);
        return *this;
    }
    ~DeviceBuffer();

    Status allocate(std::size_t bytes);  // at least one byte, so views of empty tensors are non-null
    Status upload(const void* host, std::size_t bytes);
    Status download(void* host, std::size_t bytes) const;
    void* data() const { return ptr_; }

private:
    void* ptr_ = nullptr;
};

// Device time between start() and stop() on the default stream, from CUDA events. Like
// triton.testing.do_bench, which times the peers (bench/peers.py), start() first clears the L2 with a
// 256 MB memset: the call then starts cold, and the host enqueues it while the memset runs, so the
// window holds the call's device time and not the host's launch work (a few µs that a decode step
// would otherwise count; serving stacks hide them in CUDA graphs).
class DeviceTimer {
public:
    DeviceTimer() = default;
    DeviceTimer(const DeviceTimer&) = delete;
    DeviceTimer& operator=(const DeviceTimer&) = delete;
    ~DeviceTimer();

    Status start();
    Status stop(double& ms);  // waits for the stream to reach the stop event

private:
    void* start_ = nullptr;  // cudaEvent_t
    void* stop_ = nullptr;
    void* flush_ = nullptr;  // the memset's buffer
};

}  // namespace ccattn::cli
