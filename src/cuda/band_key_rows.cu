// Band tensors' key rows: one thread per (sequence, key), two binary searches over the sequence's
// edge tensors (core::TensorBand::search_hi_above / search_lo_above).
#include "cuda/band_key_rows.h"

#include "core/band_tensors.h"
#include "core/schedule.h"

namespace ccattn::cuda {
namespace {

__global__ void band_key_rows_kernel(const __grid_constant__ core::AttnParams p, std::int32_t* rows) {
    const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
    for (int b = blockIdx.y; b < p.batch; b += gridDim.y) {
        const core::Sequence seq = core::sequence(p, b);
        const core::TensorBand band = core::tensor_band(p, b, seq);
        for (std::int64_t j = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; j < seq.seqlen_k; j += stride) {
            std::int32_t* key = rows + 2 * (core::key_row0(p.varlen(), b, seq.row_k, p.seqlen_k) + j);
            key[0] = std::int32_t(band.search_hi_above(j, seq.seqlen_q));
            key[1] = std::int32_t(band.search_lo_above(j, seq.seqlen_q));
        }
    }
}

}  // namespace

cudaError_t fill_band_key_rows(const core::AttnParams& p, std::int32_t* rows) {
    if (p.batch == 0 || p.seqlen_k == 0) return cudaSuccess;  // seqlen_k: the longest sequence's
    constexpr int kBlock = 256;
    const std::int64_t blocks = core::ceil_div(p.seqlen_k, kBlock);
    const dim3 grid(unsigned(blocks < 1024 ? blocks : 1024), unsigned(p.batch < 65535 ? p.batch : 65535));
    band_key_rows_kernel<<<grid, kBlock, 0, static_cast<cudaStream_t>(p.stream)>>>(p, rows);
    return cudaGetLastError();
}

}  // namespace ccattn::cuda
