// device_memory.h for a build without CUDA: there is no device memory to use.
#include "cli/device_memory.h"

namespace ccattn::cli {
namespace {

Status unavailable() { return {Code::backend_unavailable, "backend", "ccattn was built without CUDA"}; }

}  // namespace

std::string device_name() { return ""; }

DeviceBuffer::~DeviceBuffer() = default;
Status DeviceBuffer::allocate(std::size_t) { return unavailable(); }
Status DeviceBuffer::upload(const void*, std::size_t) { return unavailable(); }
Status DeviceBuffer::download(void*, std::size_t) const { return unavailable(); }

DeviceTimer::~DeviceTimer() = default;
Status DeviceTimer::start() { return unavailable(); }
Status DeviceTimer::stop(double&) { return unavailable(); }

}  // namespace ccattn::cli
