// Forward kernel instantiation: head dims 256/256, bf16.
#include "sm80/forward_kernel.h"

namespace ccattn::sm80 {
template Status run_forward<256, 256, DType::bf16>(const core::AttnParams&);
}  // namespace ccattn::sm80
