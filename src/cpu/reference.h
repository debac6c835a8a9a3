// The fp64 oracle: attention over the visible set of p's mask, evaluated per element, with no
// tiling and no schedule. Every backend's tests compare against it. Runs on all hardware threads
// (over sequences and KV heads), so p's host callables may be called concurrently.
#pragma once

#include <cstdint>
#include <vector>

#include "core/params.h"

namespace ccattn::cpu {

// Dense layouts over all rows (row = b*Sq + i for fixed length, the varlen row otherwise; krow
// likewise for keys):
//   out[(row*Hq + h)*Dv + d], lse[row*Hq + h] (natural log, -inf for empty rows),
//   dq[(row*Hq + h)*Dqk + d], dk[(krow*Hkv + hk)*Dqk + d], dv[(krow*Hkv + hk)*Dv + d].
struct Reference {
    std::vector<double> out, lse, dq, dk, dv;
};

// Reads p's host tensors q, k, v through their strides.
Reference reference_forward(const core::AttnParams& p);

// Fills r.dq, r.dk, r.dv from p's q, k, v, dout, the reference's own fp64 lse (computed here when r
// holds none) and, as the contract defines the backward, p's out as given: D_i = sum(dO_i * out_i).
// p.out must hold the forward's output.
void reference_backward(const core::AttnParams& p, Reference& r);

// Is key j visible to query i (sequence-local) of batch b, query head h, under p's mask?
bool reference_visible(const core::AttnParams& p, int b, int h, std::int64_t i, std::int64_t j);

}  // namespace ccattn::cpu
