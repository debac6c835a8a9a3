// Hopper forward, head dims 192/128, fp16.
#include "sm90/forward_launch.h"
#include "sm90/kernel_traits.h"

namespace ccattn::sm90 {
template Status launch_forward<KernelTraits<cutlass::half_t, 192, 128>>(const core::AttnParams&, const decode::SplitWork*);
}  // namespace ccattn::sm90
