// Forward kernel instantiation: head dims 192/128, bf16.
#include "sm80/forward_kernel.h"

namespace ccattn::sm80 {
template Status run_forward<192, 128, DType::bf16>(const core::AttnParams&);
}  // namespace ccattn::sm80
