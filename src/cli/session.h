// One attention problem placed where a backend computes it: host memory for the CPU backend,
// device memory (copied in once, copied back on fetch) for the CUDA backend. Runs and times the
// forward and backward through the public API.
#pragma once

#include <array>
#include <optional>

#include "ccattn/ccattn.h"
#include "cli/device_memory.h"
#include "cli/host_array.h"

namespace ccattn::cli {

// Backend::automatic as the CLI resolves it: cuda when a CUDA device is usable, cpu otherwise.
Backend resolve_backend(Backend requested);
const char* backend_name(Backend b);

class Session {
public:
    Session() = default;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // `backend` is cpu or cuda. The mask (and block-sparse lists it views) must outlive the session.
    // deterministic: BackwardArgs::deterministic for the backward. kv_cache_page_size >= 0: forward()
    // runs attention_with_kvcache with k / v laid into a cache (CaseSpec::kv_cache_page_size);
    // num_splits goes to the call either way.
    Status open(const Inputs& in, const Mask& mask, Backend backend, std::optional<float> scale, int num_threads,
                bool deterministic, std::int64_t kv_cache_page_size = -1, int num_splits = 0);

    Status forward();
    Status backward();  // after forward(): reads its out and lse
    // One timed call: device events for cuda, wall clock for cpu.
    Status timed_forward(double& ms);
    Status timed_backward(double& ms);

    // The outputs so far (gradients when the inputs have dout).
    Status fetch(Outputs& out) const;

private:
    // A host array and, for the cuda backend, its device copy.
    struct Slot {
        HostArray host;
        DeviceBuffer device;
        Tensor view;
    };
    Status place(Slot& slot, const HostArray& a);
    Status open_cache(const Inputs& in, std::int64_t page_size);
    Status timed(bool backward, double& ms);

    Backend backend_ = Backend::cpu;
    Slot q_, k_, v_, dout_, cu_q_, cu_k_, out_, lse_, dq_, dk_, dv_;
    Slot k_cache_, v_cache_, page_table_, seqlens_;  // --kv-cache
    bool kv_cache_ = false;
    KvCacheArgs cache_args_;
    std::array<Slot, 4> sparse_;  // device copies of block-sparse lists
    std::array<Slot, 2> band_;    // device copies of band tensors (lo, hi)
    ForwardArgs fwd_;
    BackwardArgs bwd_;
    DeviceTimer timer_;
};

}  // namespace ccattn::cli
