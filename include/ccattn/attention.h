// ccattn public API: forward and backward attention.
//
// Shapes (last dimension contiguous, other strides free, in elements):
//   fixed length: q [B, Sq, Hq, Dqk], k [B, Sk, Hkv, Dqk], v [B, Sk, Hkv, Dv],
//                 out [B, Sq, Hq, Dv], lse float32 [B, Hq, Sq]
//   varlen:       q [Tq, Hq, Dqk], k [Tk, Hkv, Dqk], v [Tk, Hkv, Dv], out [Tq, Hq, Dv],
//                 lse float32 [Hq, Tq], cu_seqlens_q / cu_seqlens_k int32 [B + 1]
// q, k, v, out and the gradients share one dtype (bf16 or fp16); accumulation is float32.
#pragma once

#include <cstdint>
#include <optional>

#include "ccattn/mask.h"
#include "ccattn/status.h"
#include "ccattn/tensor.h"

namespace ccattn {

enum class Backend { automatic, cpu, cuda };

// cu_seqlens on a CUDA device are copied to the host and checked before a call runs: a synchronizing
// copy, which a CUDA graph cannot capture. check_cu_seqlens = false skips the copy; the call then
// reads them only on the device, and the caller guarantees what the check would have found: the
// contract of cu_seqlens (non-decreasing, first 0, last Tq / Tk) and no sequence longer than
// max_seqlen_q / max_seqlen_k (required then; a larger bound only costs idle thread blocks).
// Violations are undefined behaviour (out-of-bounds reads and writes on the device). Host cu_seqlens
// are always checked (the check costs no copy); given bounds are then checked against them too.
struct VarlenChecks {
    bool check_cu_seqlens = true;
    std::optional<std::int64_t> max_seqlen_q, max_seqlen_k;
};

struct ForwardArgs {
    Tensor q, k, v;
    Tensor out;                      // written
    Tensor lse;                      // written when defined (optional)
    Tensor cu_seqlens_q, cu_seqlens_k;  // both defined for varlen, both absent otherwise
    VarlenChecks varlen;
    Mask mask;
    std::optional<float> scale;      // default 1 / sqrt(Dqk)
    Backend backend = Backend::automatic;
    // CUDA backend: CTAs that share one sequence's keys (split-KV decode, for few query rows per KV
    // head), combined exactly afterwards. 0 = heuristic, 1 = no split; at most 256. Block-sparse
    // lists then need tile_m a multiple of 16 and tile_n one of the split kernel's key tile (the
    // CUDA forward's own tiles, ccattn::cuda_block_sparse_tiles, are). The CPU backend ignores it.
    int num_splits = 0;
    int num_threads = 0;             // CPU backend: 0 = all hardware threads
    void* stream = nullptr;          // CUDA backend: cudaStream_t
};

struct BackwardArgs {
    Tensor q, k, v, out, lse, dout;  // out and lse as the forward wrote them
    Tensor dq, dk, dv;               // written
    Tensor cu_seqlens_q, cu_seqlens_k;
    VarlenChecks varlen;
    Mask mask;
    std::optional<float> scale;
    Backend backend = Backend::automatic;
    int num_threads = 0;
    void* stream = nullptr;
    // A fixed order of every floating-point addition, so that repeated calls on the same inputs give
    // bitwise-identical dq, dk, dv. The CPU backend always runs so; the CUDA backend otherwise sums dQ
    // (and, for compressed keys, dK and dV) with atomics in whatever order its thread blocks reach
    // them, and with it orders them by semaphores (slower; block-sparse masks are refused).
    bool deterministic = false;
};

Status forward(const ForwardArgs& args);
Status backward(const BackwardArgs& args);

// Which backend Backend::automatic picks on this machine: cuda when the library was built with CUDA
// and a device is visible and the tensors are on it, cpu otherwise.
bool cuda_available();

}  // namespace ccattn
