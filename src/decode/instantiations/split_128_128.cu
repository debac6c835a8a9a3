// Split-KV decode kernel instantiations: head dims 128/128, bf16 and fp16.
#include "decode/split_kernel.h"

namespace ccattn::decode {
template Status run_split<128, 128, DType::bf16>(const core::AttnParams&, const SplitWork&);
template Status run_split<128, 128, DType::fp16>(const core::AttnParams&, const SplitWork&);
}  // namespace ccattn::decode
