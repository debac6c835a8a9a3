// Forward kernel instantiation: head dims 64/64, fp16.
#include "sm80/forward_kernel.h"

namespace ccattn::sm80 {
template Status run_forward<64, 64, DType::fp16>(const core::AttnParams&);
}  // namespace ccattn::sm80
