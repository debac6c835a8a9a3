// The Hopper (sm_90a) kernels: wgmma, TMA and warp specialization. Entry points that
// src/cuda/backend.cu dispatches to on compute capability 9.0 devices.
#pragma once

#include <cstdint>

#include "ccattn/status.h"
#include "core/params.h"
#include "decode/split_work.h"
#include "sm80/backward_tiles.h"

namespace ccattn::sm90 {

// Whether forward(p) runs p: see unsupported_reason for the exact conditions.
bool supports(const core::AttnParams& p);

// Why forward(p) would not run p (the argument and a message), or an ok Status when it would.
Status unsupported_reason(const core::AttnParams& p);

// The forward kernel's q-tile (query positions) and kv-tile sizes for these head dims: what a
// block-sparse mask must use to run here. False when no sm90 kernel has these head dims.
bool forward_tile_for(int dim_qk, int dim_v, std::int64_t& tile_m, std::int64_t& tile_n);

// Launches the forward on p.stream. Returns Code::unsupported when !supports(p), a cuda_error
// when the launch fails.
Status forward(const core::AttnParams& p);

// The same kernel split-KV (src/decode drives it): every q-tile's kv steps in w.splits shares, each
// share's rows (normalized within it) and lse into w's partial results for the combine kernel.
Status forward_split(const core::AttnParams& p, const decode::SplitWork& w);

// Whether backward(p) runs p on the Hopper backward kernel (head dims 64/64, 128/128 and 192/128;
// the dispatch keeps 256/256 on the sm80 backward).
bool supports_backward(const core::AttnParams& p);

// The Hopper backward's tiles (packed query rows per q-tile, keys per CTA) for head dims it runs
// (has_backward_tile); zeros for others.
sm80::KernelTiles backward_tiles(int dim_qk, int dim_v);

// Launches the backward on p.stream through the shared host driver (sm80::backward_with).
Status backward(const core::AttnParams& p);

}  // namespace ccattn::sm90
