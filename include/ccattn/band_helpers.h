// ccattn public API: band tensors (Mask::band_tensors) for common masks, built on the host.
// Pictures of each mask: docs/band_tensors.md. Python twins: ccattn.bands.
#pragma once

#include <cstdint>
#include <vector>

#include "ccattn/mask.h"

namespace ccattn {

// Per-row edges of one row space: row i sees keys [lo[i], hi[i]).
struct BandEdges {
    std::vector<std::int64_t> lo, hi;

    // Band tensors [batch, S] sharing these edges across the batch (batch stride 0). The mask views
    // this object's storage: keep it alive and unchanged while the mask is used.
    Mask mask(int batch) const;
    // Band tensors [Tq] for a varlen call (the edges are then one entry per packed query row).
    Mask packed() const;
};

// Prefix-LM: the first `prefix` positions see each other (bidirectional), later ones are causal.
// Row i sees [0, max(i + 1, prefix)), clamped to seqlen by the library.
BandEdges prefix_lm_band(std::int64_t seqlen, std::int64_t prefix);

// Chunked attention: blocks of `chunk` positions see only their own block, causal inside it.
// Row i sees [floor(i / chunk) * chunk, i + 1); chunk >= 1.
BandEdges chunked_band(std::int64_t seqlen, std::int64_t chunk);

// Documents packed into one sequence without cu_seqlens (lengths in order): a row sees only its own
// document, causally (or all of it when causal is false).
BandEdges document_band(const std::vector<std::int64_t>& lengths, bool causal = true);

// NSA compressed keys of packed documents: document d has lengths[d] queries and
// blocks(lengths[d]) = floor((lengths[d] - block) / stride) + 1 compressed keys (0 if shorter than a
// block), laid out one document after another; query t of a document sees its own document's
// blocks that end at or before t (block j covers raw positions [j * stride, j * stride + block)).
// block, stride >= 1.
BandEdges nsa_document_band(const std::vector<std::int64_t>& lengths, std::int64_t block, std::int64_t stride);
// Compressed keys of one document of `length` positions.
std::int64_t nsa_blocks(std::int64_t length, std::int64_t block, std::int64_t stride);

}  // namespace ccattn
