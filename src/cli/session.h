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
    // deterministic: BackwardArgs::deterministic for the backward.
    Status open(const Inputs& in, const Mask& mask, Backend backend, std::optional<float> scale, int num_threads,
                bool deterministic);

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
    Status timed(bool backward, double& ms);

    Backend backend_ = Backend::cpu;
    Slot q_, k_, v_, dout_, cu_q_, cu_k_, out_, lse_, dq_, dk_, dv_;
    std::array<Slot, 4> sparse_;  // device copies of block-sparse lists
    ForwardArgs fwd_;
    BackwardArgs bwd_;
    DeviceTimer timer_;
};

}  // namespace ccattn::cli
