// Hopper forward, head dims 128/128, bf16.
#include "sm90/forward_launch.h"
#include "sm90/kernel_traits.h"

namespace ccattn::sm90 {
template Status launch_forward<KernelTraits<cutlass::bfloat16_t, 128, 128>>(const core::AttnParams&, const decode::SplitWork*);
}  // namespace ccattn::sm90
