// The CUDA backend of a build without CUDA: every call reports that it is unavailable.
#include "api/backends.h"
#include "ccattn/cuda_tiles.h"

namespace ccattn::cuda {

namespace {
Status unavailable() { return {Code::backend_unavailable, "backend", "ccattn was built without CUDA"}; }
}  // namespace

bool available() { return false; }
Status forward(const core::AttnParams&) { return unavailable(); }
Status backward(const core::AttnParams&) { return unavailable(); }
Status forward_kvcache(const core::AttnParams&) { return unavailable(); }
Status copy_to_host(const std::int32_t*, std::int64_t, std::int32_t*) { return unavailable(); }

}  // namespace ccattn::cuda

namespace ccattn {
Status cuda_block_sparse_tiles(int, int, DType, std::int64_t&, std::int64_t&) { return cuda::unavailable(); }
}  // namespace ccattn
