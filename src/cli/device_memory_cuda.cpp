// device_memory.h through the CUDA runtime (builds with CUDA).
#include <cuda_runtime.h>

#include "cli/device_memory.h"

namespace ccattn::cli {
namespace {

Status check(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return Status::success();
    return {Code::cuda_error, "device", std::string(what) + ": " + cudaGetErrorString(e)};
}

}  // namespace

std::string device_name() {
    int count = 0;
    cudaDeviceProp prop;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0 || cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky error of a machine without a device
        return "";
    }
    return prop.name;
}

DeviceBuffer::~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
}

Status DeviceBuffer::allocate(std::size_t bytes) {
    if (ptr_ != nullptr) {
        cudaFree(ptr_);
        ptr_ = nullptr;
    }
    return check(cudaMalloc(&ptr_, bytes > 0 ? bytes : 1), "cudaMalloc");
}

Status DeviceBuffer::upload(const void* host, std::size_t bytes) {
    if (bytes == 0) return Status::success();
    return check(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to the device");
}

Status DeviceBuffer::download(void* host, std::size_t bytes) const {
    if (bytes == 0) return Status::success();
    return check(cudaMemcpy(host, ptr_, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
}

constexpr std::size_t kFlushBytes = std::size_t(256) << 20;  // do_bench's: above every GPU's L2

DeviceTimer::~DeviceTimer() {
    if (start_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(start_));
    if (stop_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
    if (flush_ != nullptr) cudaFree(flush_);
}

Status DeviceTimer::start() {
    if (start_ == nullptr) {
        cudaEvent_t a, b;
        Status s = check(cudaEventCreate(&a), "cudaEventCreate");
        if (!s.ok()) return s;
        start_ = a;
        if (!(s = check(cudaEventCreate(&b), "cudaEventCreate")).ok()) return s;
        stop_ = b;
    }
    if (flush_ == nullptr) {
        Status s = check(cudaMalloc(&flush_, kFlushBytes), "cudaMalloc of the L2 flush buffer");
        if (!s.ok()) return s;
    }
    Status s = check(cudaMemsetAsync(flush_, 0, kFlushBytes, nullptr), "cudaMemsetAsync (L2 flush)");
    if (!s.ok()) return s;
    return check(cudaEventRecord(static_cast<cudaEvent_t>(start_), nullptr), "cudaEventRecord");
}

Status DeviceTimer::stop(double& ms) {
    Status s = check(cudaEventRecord(static_cast<cudaEvent_t>(stop_), nullptr), "cudaEventRecord");
    if (!s.ok()) return s;
    if (!(s = check(cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)), "cudaEventSynchronize")).ok()) return s;
    float elapsed = 0.f;
    s = check(cudaEventElapsedTime(&elapsed, static_cast<cudaEvent_t>(start_), static_cast<cudaEvent_t>(stop_)),
              "cudaEventElapsedTime");
    ms = elapsed;
    return s;
}

}  // namespace ccattn::cli
