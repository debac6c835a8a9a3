// The host launch of one Hopper forward instantiation. Defined in forward_launch.h and
// instantiated once per (dtype, head dims) under src/sm90/instantiations/.
#pragma once

#include "ccattn/status.h"
#include "core/params.h"

namespace ccattn::sm90 {

// p must satisfy supports(p) with Traits' element type and head dims.
template <class Traits>
Status launch_forward(const core::AttnParams& p);

}  // namespace ccattn::sm90
