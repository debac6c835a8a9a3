// Split-KV decode kernel instantiations: head dims 64/64, bf16 and fp16.
#include "decode/split_kernel.h"

namespace ccattn::decode {
template Status run_split<64, 64, DType::bf16>(const core::AttnParams&, const SplitWork&);
template Status run_split<64, 64, DType::fp16>(const core::AttnParams&, const SplitWork&);
}  // namespace ccattn::decode
