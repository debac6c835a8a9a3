// The backends behind the public calls; the dispatch in attention.cpp is the only caller.
#pragma once

#include <cstdint>

#include "ccattn/status.h"
#include "core/params.h"

namespace ccattn::cpu {
Status forward(const core::AttnParams& p);
Status backward(const core::AttnParams& p);
// attention_with_kvcache (p.cache set): appends, then one plain forward per sequence (src/cpu/kvcache.cpp).
Status forward_kvcache(const core::AttnParams& p);
}  // namespace ccattn::cpu

namespace ccattn::cuda {
// False when the library was built without CUDA or no device is visible.
bool available();
Status forward(const core::AttnParams& p);
Status backward(const core::AttnParams& p);
// attention_with_kvcache (p.cache set): appends and split-KV attention on p.stream, no host sync.
Status forward_kvcache(const core::AttnParams& p);
// Copies `count` int32 values from device memory (validation reads cu_seqlens on the host).
Status copy_to_host(const std::int32_t* device_ptr, std::int64_t count, std::int32_t* host_ptr);
}  // namespace ccattn::cuda
