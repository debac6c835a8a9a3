// Element masking of a score tile, the one place where a mask mechanism touches single elements.
#pragma once

#include "ccattn/mask.h"
#include "cpu/blocks.h"

namespace ccattn::cpu {

// How a (query block, key block) pair is masked: not at all (a full tile; only keys past the
// block's count are cut), by each row's band [lo, hi), or by a host predicate per element.
enum class TileMask { none, band, predicate };

// How a score tile is stored: by query rows, S[r][j] with rows of kTileN (the key-major pass), or
// by key rows, S[j][r] with rows of kTileM (the query-major passes: their per-query softmax
// statistics then run along contiguous vectors).
enum class ScoreLayout { by_query, by_key };

// Score (r, j) becomes scale * score where key n0 + j is visible to row r, -inf elsewhere. By
// query rows the padding keys (j >= count) become -inf too; by key rows only the count key rows
// are touched (the query-major passes read no further), padding query rows included.
// seen (kTileM flags, optional): set for each row with a visible key here. A masked score and a
// score of -inf look alike, and the forward must tell an empty row from one whose scores are -inf.
void scale_and_mask(float* S, ScoreLayout layout, float scale, const QueryBlock& qb, const KeyBlock& kb,
                    TileMask mask, const MaskModFn* predicate, bool* seen = nullptr);

}  // namespace ccattn::cpu
