#include "ccattn/block_sparse.h"

#include <algorithm>
#include <initializer_list>
#include <limits>
#include <string>

#include "api/validate.h"
#include "core/schedule.h"

namespace ccattn {
namespace {

// Per-sequence lengths of a Shape, checked.
struct Lengths {
    std::vector<std::int64_t> q, k;
    std::int64_t max_q = 0, max_k = 0;
};

Status resolve(const BlockSparseLists::Shape& s, Lengths& len) {
    if (s.tile_m < 1) return Status::invalid("tile_m", "must be >= 1");
    if (s.tile_n < 1) return Status::invalid("tile_n", "must be >= 1");
    if (s.batch < 0) return Status::invalid("batch", "must be >= 0");
    if ((s.cu_seqlens_q == nullptr) != (s.cu_seqlens_k == nullptr))
        return Status::invalid(s.cu_seqlens_q ? "cu_seqlens_k" : "cu_seqlens_q", "varlen needs both cu_seqlens");
    if (s.cu_seqlens_q) {
        Status st = api::check_cu_seqlens(s.cu_seqlens_q, s.batch + 1, s.cu_seqlens_q[s.batch], "cu_seqlens_q", &len.max_q);
        if (!st.ok()) return st;
        st = api::check_cu_seqlens(s.cu_seqlens_k, s.batch + 1, s.cu_seqlens_k[s.batch], "cu_seqlens_k", &len.max_k);
        if (!st.ok()) return st;
        for (int b = 0; b < s.batch; ++b) {
            len.q.push_back(s.cu_seqlens_q[b + 1] - s.cu_seqlens_q[b]);
            len.k.push_back(s.cu_seqlens_k[b + 1] - s.cu_seqlens_k[b]);
        }
    } else {
        if (s.seqlen_q < 0) return Status::invalid("seqlen_q", "must be >= 0");
        if (s.seqlen_k < 0) return Status::invalid("seqlen_k", "must be >= 0");
        len.q.assign(std::size_t(s.batch), s.seqlen_q);
        len.k.assign(std::size_t(s.batch), s.seqlen_k);
        len.max_q = s.seqlen_q;
        len.max_k = s.seqlen_k;
    }
    if (core::num_tiles(len.max_k, s.tile_n) > std::numeric_limits<std::int32_t>::max())
        return Status::invalid("tile_n", "too many kv tiles for int32 lists");
    return Status::success();
}

}  // namespace

struct BlockSparseLists::Builder {
    int batch = 0, heads = 1;
    std::int64_t q_tiles = 0, tile_m = 1, tile_n = 1;
    std::vector<std::vector<std::int32_t>> full, partial;  // [(b * heads + h) * q_tiles + mt]

    Builder(int b, int h, std::int64_t tiles, const Shape& s)
        : batch(b), heads(h), q_tiles(tiles), tile_m(s.tile_m), tile_n(s.tile_n),
          full(std::size_t(b * h * tiles)), partial(std::size_t(b * h * tiles)) {}
    std::size_t at(int b, int h, std::int64_t mt) const { return std::size_t((std::int64_t(b) * heads + h) * q_tiles + mt); }
};

Status BlockSparseLists::from_band(const Mask& band, const Shape& shape, BlockSparseLists& out) {
    if (band.kind != MaskKind::band) return Status::invalid("mask", "from_band needs a band mask (kind == band)");
    Status s = api::check_band(band);
    if (!s.ok()) return s;
    Lengths len;
    s = resolve(shape, len);
    if (!s.ok()) return s;
    const core::BandSpec spec = api::band_spec(band);

    Builder lists(shape.batch, 1, core::num_tiles(len.max_q, shape.tile_m), shape);
    for (int b = 0; b < shape.batch; ++b) {
        const core::CompressedBand seq_band = spec.for_sequence(len.q[std::size_t(b)], len.k[std::size_t(b)]);
        for (std::int64_t mt = 0; mt < core::num_tiles(len.q[std::size_t(b)], shape.tile_m); ++mt) {
            const core::TileRange range =
                core::kv_tile_range(seq_band, core::query_span(mt, shape.tile_m, 1, len.q[std::size_t(b)]), shape.tile_n);
            for (std::int64_t t = range.begin; t < range.end; ++t)
                (range.is_full(t) ? lists.full : lists.partial)[lists.at(b, 0, mt)].push_back(std::int32_t(t));
        }
    }
    out.pack(lists);
    out.mask_mod_ = [spec, lq = std::move(len.q), lk = std::move(len.k)](int b, int, std::int64_t i, std::int64_t j) {
        return core::visible(spec.for_sequence(lq[std::size_t(b)], lk[std::size_t(b)]), i, j);
    };
    return Status::success();
}

Status BlockSparseLists::from_predicate(const MaskModFn& visible, int heads, const Shape& shape, BlockSparseLists& out) {
    if (!visible) return Status::invalid("visible", "is empty");
    if (heads < 1) return Status::invalid("heads", "must be >= 1");
    Lengths len;
    Status s = resolve(shape, len);
    if (!s.ok()) return s;
    Builder lists(shape.batch, heads, core::num_tiles(len.max_q, shape.tile_m), shape);
    for (int b = 0; b < shape.batch; ++b) {
        const std::int64_t sq = len.q[std::size_t(b)], sk = len.k[std::size_t(b)];
        for (int h = 0; h < heads; ++h)
            for (std::int64_t mt = 0; mt < core::num_tiles(sq, shape.tile_m); ++mt)
                for (std::int64_t nt = 0; nt < core::num_tiles(sk, shape.tile_n); ++nt) {
                    const std::int64_t i1 = std::min(sq, (mt + 1) * shape.tile_m), j1 = (nt + 1) * shape.tile_n;
                    std::int64_t seen = 0, pairs = 0;
                    for (std::int64_t i = mt * shape.tile_m; i < i1; ++i)
                        for (std::int64_t j = nt * shape.tile_n; j < std::min(sk, j1); ++j, ++pairs) seen += visible(b, h, i, j);
                    if (seen == 0) continue;
                    const bool full = seen == pairs && j1 <= sk;  // a ragged last tile is never full
                    (full ? lists.full : lists.partial)[lists.at(b, h, mt)].push_back(std::int32_t(nt));
                }
    }
    out.pack(lists);
    out.mask_mod_ = visible;
    return Status::success();
}

void BlockSparseLists::pack(const Builder& b) {
    batch_ = b.batch;
    heads_ = b.heads;
    q_tiles_ = b.q_tiles;
    tile_m_ = b.tile_m;
    tile_n_ = b.tile_n;
    auto fill = [&](const std::vector<std::vector<std::int32_t>>& lists, std::int64_t& slots,
                    std::vector<std::int32_t>& count, std::vector<std::int32_t>& index) {
        slots = 1;  // never a zero-sized (null) index tensor
        for (const auto& l : lists) slots = std::max<std::int64_t>(slots, std::int64_t(l.size()));
        count.assign(std::max<std::size_t>(1, lists.size()), 0);
        index.assign(std::max<std::size_t>(1, lists.size() * std::size_t(slots)), 0);
        for (std::size_t e = 0; e < lists.size(); ++e) {
            count[e] = std::int32_t(lists[e].size());
            std::copy(lists[e].begin(), lists[e].end(), index.begin() + std::ptrdiff_t(e * std::size_t(slots)));
        }
    };
    fill(b.full, full_slots_, full_count_, full_index_);
    fill(b.partial, partial_slots_, partial_count_, partial_index_);
}

BlockSparseMask BlockSparseLists::view() const {
    auto tensor = [](const std::vector<std::int32_t>& v, std::initializer_list<std::int64_t> shape) {
        return Tensor::contiguous(const_cast<std::int32_t*>(v.data()), DType::int32, shape);
    };
    BlockSparseMask m;
    m.tile_m = tile_m_;
    m.tile_n = tile_n_;
    m.full_count = tensor(full_count_, {batch_, heads_, q_tiles_});
    m.full_index = tensor(full_index_, {batch_, heads_, q_tiles_, full_slots_});
    m.partial_count = tensor(partial_count_, {batch_, heads_, q_tiles_});
    m.partial_index = tensor(partial_index_, {batch_, heads_, q_tiles_, partial_slots_});
    m.mask_mod = mask_mod_;
    return m;
}

Mask BlockSparseLists::mask() const {
    Mask m;
    m.kind = MaskKind::block_sparse;
    m.block_sparse = view();
    return m;
}

std::int64_t BlockSparseLists::total_full() const {
    std::int64_t n = 0;
    for (std::int64_t e = 0; e < std::int64_t(batch_) * heads_ * q_tiles_; ++e) n += full_count_[std::size_t(e)];
    return n;
}

std::int64_t BlockSparseLists::total_partial() const {
    std::int64_t n = 0;
    for (std::int64_t e = 0; e < std::int64_t(batch_) * heads_ * q_tiles_; ++e) n += partial_count_[std::size_t(e)];
    return n;
}

}  // namespace ccattn
