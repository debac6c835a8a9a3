#include "cpu/tile_mask.h"

#include <cstdint>
#include <limits>

#include "core/band.h"

namespace ccattn::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Visible keys of each row as block-local columns [begin[r], end[r]) (empty for padding rows).
void visible_columns(const QueryBlock& qb, const KeyBlock& kb, TileMask mask, std::int32_t* begin, std::int32_t* end) {
    for (int r = 0; r < kTileM; ++r) {
        begin[r] = end[r] = 0;
        if (r >= qb.rows) continue;
        if (mask == TileMask::none) {
            end[r] = kb.count;
        } else {
            begin[r] = std::int32_t(core::clamp(qb.lo[r] - kb.n0, 0, kb.count));
            end[r] = std::int32_t(core::clamp(qb.hi[r] - kb.n0, 0, kb.count));
        }
    }
}

void mask_predicate(float* S, ScoreLayout layout, float scale, const QueryBlock& qb, const KeyBlock& kb,
                    const MaskModFn& predicate, bool* seen) {
    const int rows = layout == ScoreLayout::by_query ? qb.rows : kTileM;
    const int keys = layout == ScoreLayout::by_query ? kTileN : kb.count;
    for (int r = 0; r < rows; ++r)
        for (int j = 0; j < keys; ++j) {
            float& s = layout == ScoreLayout::by_query ? S[r * kTileN + j] : S[j * kTileM + r];
            const bool keep = r < qb.rows && j < kb.count && predicate(qb.b, qb.h[r], qb.i[r], kb.n0 + j);
            s = keep ? s * scale : kNegInf;
            if (keep && seen) seen[r] = true;
        }
}

}  // namespace

void scale_and_mask(float* S, ScoreLayout layout, float scale, const QueryBlock& qb, const KeyBlock& kb,
                    TileMask mask, const MaskModFn* predicate, bool* seen) {
    if (mask == TileMask::predicate) return mask_predicate(S, layout, scale, qb, kb, *predicate, seen);
    std::int32_t begin[kTileM], end[kTileM];
    visible_columns(qb, kb, mask, begin, end);
    if (seen)
        for (int r = 0; r < qb.rows; ++r) seen[r] = seen[r] || begin[r] < end[r];
    if (layout == ScoreLayout::by_query) {
        for (int r = 0; r < qb.rows; ++r) {
            float* s = S + r * kTileN;
            for (int j = 0; j < kTileN; ++j) s[j] = (j >= begin[r] && j < end[r]) ? s[j] * scale : kNegInf;
        }
    } else {
        for (int j = 0; j < kb.count; ++j) {
            float* s = S + j * kTileM;
            for (int r = 0; r < kTileM; ++r) s[r] = (j >= begin[r] && j < end[r]) ? s[r] * scale : kNegInf;
        }
    }
}

}  // namespace ccattn::cpu
