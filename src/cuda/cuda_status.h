// CUDA runtime errors as ccattn Status values (code cuda_error, the failing call named in the message).
#pragma once

#include <string>

#include <cuda_runtime.h>

#include "ccattn/status.h"

namespace ccattn::cuda {

inline Status cuda_status(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return Status::success();
    return {Code::cuda_error, "", std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")"};
}

}  // namespace ccattn::cuda
