#include "ccattn/band_helpers.h"

#include <algorithm>

namespace ccattn {
namespace {

Tensor edge_view(const std::vector<std::int64_t>& edge, int batch) {
    // The library only reads band tensors.
    void* data = const_cast<std::int64_t*>(edge.data());
    const std::int64_t n = std::int64_t(edge.size());
    if (batch < 0) return Tensor::contiguous(data, DType::int64, {n});
    Tensor t = Tensor::contiguous(data, DType::int64, {batch, n});
    t.stride[0] = 0;
    return t;
}

}  // namespace

Mask BandEdges::mask(int batch) const { return Mask::band_tensors(edge_view(lo, batch), edge_view(hi, batch)); }

Mask BandEdges::packed() const { return Mask::band_tensors(edge_view(lo, -1), edge_view(hi, -1)); }

BandEdges prefix_lm_band(std::int64_t seqlen, std::int64_t prefix) {
    BandEdges e;
    for (std::int64_t i = 0; i < seqlen; ++i) {
        e.lo.push_back(0);
        e.hi.push_back(std::max(i + 1, prefix));
    }
    return e;
}

BandEdges chunked_band(std::int64_t seqlen, std::int64_t chunk) {
    BandEdges e;
    for (std::int64_t i = 0; i < seqlen; ++i) {
        e.lo.push_back(i / chunk * chunk);
        e.hi.push_back(i + 1);
    }
    return e;
}

BandEdges document_band(const std::vector<std::int64_t>& lengths, bool causal) {
    BandEdges e;
    std::int64_t start = 0;
    for (std::int64_t len : lengths) {
        for (std::int64_t t = 0; t < len; ++t) {
            e.lo.push_back(start);
            e.hi.push_back(causal ? start + t + 1 : start + len);
        }
        start += len;
    }
    return e;
}

std::int64_t nsa_blocks(std::int64_t length, std::int64_t block, std::int64_t stride) {
    return length < block ? 0 : (length - block) / stride + 1;
}

BandEdges nsa_document_band(const std::vector<std::int64_t>& lengths, std::int64_t block, std::int64_t stride) {
    BandEdges e;
    std::int64_t first_key = 0;  // the document's first compressed key
    for (std::int64_t len : lengths) {
        for (std::int64_t t = 0; t < len; ++t) {
            // Blocks j with j * stride + block - 1 <= t: none before t = block - 1.
            const std::int64_t seen = t + 1 < block ? 0 : (t + 1 - block) / stride + 1;
            e.lo.push_back(first_key);
            e.hi.push_back(first_key + seen);
        }
        first_key += nsa_blocks(len, block, stride);
    }
    return e;
}

}  // namespace ccattn
