// The Hopper forward kernel's parameters: the validated call, the work order, and the TMA
// descriptors of K and V (encoded on the host, passed as a __grid_constant__ parameter).
#pragma once

#include "core/params.h"
#include "sm90/tile_scheduler.h"

namespace ccattn::sm90 {

template <class Traits>
struct KernelParams {
    core::AttnParams attn;
    TileScheduler scheduler;
    typename Traits::TmaK tma_k;
    typename Traits::TmaV tma_v;
    typename Traits::ShapeKV shape_k;   // (rows, Dqk, kv heads, batch)
    typename Traits::ShapeKV shape_vt;  // (Dv, rows, kv heads, batch)
};

}  // namespace ccattn::sm90
