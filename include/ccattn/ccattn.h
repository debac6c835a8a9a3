// ccattn: attention with compressed-KV band masks, forward and backward, on CPU and CUDA.
#pragma once

#include "ccattn/attention.h"
#include "ccattn/band_helpers.h"
#include "ccattn/block_sparse.h"
#include "ccattn/cuda_tiles.h"
#include "ccattn/kvcache.h"
#include "ccattn/mask.h"
#include "ccattn/status.h"
#include "ccattn/tensor.h"
