// The host launch of one Hopper forward instantiation. Defined in forward_launch.h and
// instantiated once per (dtype, head dims) under src/sm90/instantiations/.
#pragma once

#include "ccattn/status.h"
#include "core/params.h"
#include "decode/split_work.h"

namespace ccattn::sm90 {

// p must satisfy supports(p) with Traits' element type and head dims. split: null for the plain
// forward; else split->splits shares of every q-tile's kv steps into split's partial results.
template <class Traits>
Status launch_forward(const core::AttnParams& p, const decode::SplitWork* split);

}  // namespace ccattn::sm90
