// The portable forward kernel (sm80 and later; FlashAttention-2 structure) and its launcher.
//
// One CTA per (q-tile, head slot, batch). With GQA packing the slot is a KV head and the q-tile is
// kTileM packed rows of its G query heads (packed row pr = query pr / G of head slot * G + pr % G, see
// core::query_span); block-sparse masks run unpacked (G = 1, slot = query head) because their lists are
// per query head. Per kv tile: S = Q K^T (mma.sync, operands by ldmatrix), scale to log2 units, mask in
// registers if the tile is partial (built-in band or band tensors: per-row limits of
// core::SequenceBand), online softmax, O += P V. Loads are cp.async and overlap the math: V(t) lands
// during Q K(t)^T, K(next) during softmax and P V(t).
#pragma once

#include <climits>
#include <cstdint>

#include <cuda_runtime.h>

#include <cute/tensor.hpp>

#include "ccattn/mask.h"
#include "ccattn/status.h"
#include "core/band.h"
#include "core/band_source.h"
#include "core/params.h"
#include "core/schedule.h"
#include "cuda/cuda_status.h"
#include "sm80/copy.h"
#include "sm80/forward_launch.h"
#include "sm80/fragment.h"
#include "sm80/gemm.h"
#include "sm80/kernel_traits.h"
#include "sm80/kv_schedule.h"
#include "gpu/register_mask.h"
#include "sm80/softmax.h"

namespace ccattn::sm80 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor

// The rows of one CTA's q-tile: tile row r is packed row m0 + r of sequence b.
struct QTileRows {
    int b = 0, slot = 0, pack = 1;
    std::int64_t mt = 0, m0 = 0, packed_rows = 0;
    core::Sequence seq;

    // The q-tile of this CTA. Cheap enough to recompute after the main loop instead of holding its
    // 64-bit fields in registers through it.
    __device__ static QTileRows of_cta(const core::AttnParams& p, int tile_m) {
        QTileRows rows;
        rows.pack = p.mask_kind == MaskKind::block_sparse ? 1 : p.group;
        rows.slot = blockIdx.y;
        rows.b = blockIdx.z;
        // The last q-tiles see the most keys: launch them first.
        rows.mt = core::later_rows_see_more(p) ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
        rows.seq = core::sequence(p, rows.b);
        rows.m0 = rows.mt * tile_m;
        rows.packed_rows = rows.seq.seqlen_q * rows.pack;
        return rows;
    }
    __device__ bool empty() const { return m0 >= packed_rows; }  // varlen: beyond this sequence
    __device__ core::SequenceBand band(const core::AttnParams& p) const { return core::sequence_band(p, b, seq); }

    __device__ bool valid(int r) const { return m0 + r < packed_rows; }
    __device__ std::int64_t query(int r) const { return (m0 + r) / pack; }
    // The same with a 32-bit division: packed rows < 2^31 (checked on the host).
    __device__ std::int64_t query32(int r) const { return std::uint32_t(m0 + r) / std::uint32_t(pack); }
    __device__ int head(int r) const { return slot * pack + int((m0 + r) % pack); }
    // Offset of row r (valid) in a [B, S, Hq, D] / [T, Hq, D] tensor.
    __device__ std::int64_t offset(const core::Strides& s, int r) const {
        return core::offset(s, b, seq.row_q, query(r), head(r));
    }
};

template <class T>
__global__ void __launch_bounds__(T::kThreads, 1) forward_kernel(const __grid_constant__ core::AttnParams p) {
    using Element = typename T::Element;
    constexpr int kM = T::kTileM, kN = T::kTileN, kRows = T::kRowsPerThread, kThreads = T::kThreads;
    extern __shared__ __align__(128) unsigned char smem[];
    const int tid = threadIdx.x;

    const QTileRows rows = QTileRows::of_cta(p, kM);
    if (rows.empty()) return;
    const int seqlen_k = int(rows.seq.seqlen_k);  // < 2^31 (checked on the host)
    const core::SequenceBand band = rows.band(p);
    const int kv_head = rows.slot * rows.pack / p.group;

    KvSchedule sched;
    if (p.mask_kind == MaskKind::block_sparse) {
        sched = KvSchedule::sparse(p, rows.b, rows.slot, rows.mt, seqlen_k, kN);
    } else if (p.mask_kind == MaskKind::mask_mod) {
        sched = KvSchedule::dense(core::make_range(0, core::num_tiles(seqlen_k, kN), 0, 0), seqlen_k, kN);
    } else {
        const core::RowSpan span = core::query_span(rows.mt, kM, rows.pack, rows.seq.seqlen_q);
        sched = KvSchedule::dense(core::kv_tile_range(band, span, kN), seqlen_k, kN);
    }

    Tensor sQ = make_tensor(make_smem_ptr(reinterpret_cast<Element*>(smem)), typename T::SmemLayoutQ{});  // (M, Dqk)
    Tensor sK = make_tensor(sQ.data() + int(T::kSmemQ), typename T::SmemLayoutK{});                          // (N, Dqk)
    Tensor sV = make_tensor(sK.data() + int(T::kSmemK), typename T::SmemLayoutV{});                          // (N, Dv)
    Tensor sVt = make_tensor(sV.data(), typename T::SmemLayoutVt{});                                    // (Dv, N)
    Tensor sVtShape = make_tensor(sV.data(), typename T::SmemShapeVt{});                                // (Dv, N)
    Tensor sO = make_tensor(sQ.data(), typename T::SmemLayoutO{});  // (M, Dv), in sQ's bytes after the loop

    const auto* q = static_cast<const Element*>(p.q);
    const Element* k_head = static_cast<const Element*>(p.k) + core::offset(p.k_strides, rows.b, rows.seq.row_k, 0, kv_head);
    const Element* v_head = static_cast<const Element*>(p.v) + core::offset(p.v_strides, rows.b, rows.seq.row_k, 0, kv_head);
    auto load_q = [&] {
        load_rows_async<kThreads>(sQ, tid, [&](int r) -> const Element* {
            return rows.valid(r) ? q + rows.offset(p.q_strides, r) : nullptr;
        });
    };
    // Keys t*kN + r outside [0, seqlen_k) are zero-filled: a masked key's V row must be finite (0 * NaN).
    auto load_kv = [&](auto& s, const Element* head, std::int64_t row_stride, int t) {
        load_rows_async<kThreads>(s, tid, [&](int r) -> const Element* {
            const std::int64_t j = std::int64_t(t) * kN + r;
            return std::uint64_t(j) < std::uint64_t(seqlen_k) ? head + j * row_stride : nullptr;
        });
    };

    typename T::TiledMma mma;
    auto thr_mma = mma.get_thread_slice(tid);
    Tensor tSrQ = thr_mma.partition_fragment_A(sQ);        // (MMA, MMA_M, MMA_K)
    Tensor tSrK = thr_mma.partition_fragment_B(sK);        // (MMA, MMA_N, MMA_K)
    Tensor tOrVt = thr_mma.partition_fragment_B(sVtShape);  // (MMA, MMA_N = Dv/8, MMA_K = N/16)
    Tensor acc_o = partition_fragment_C(mma, Shape<Int<kM>, Int<T::kDimV>>{});  // (MMA, MMA_M, MMA_N)

    auto copy_q = make_tiled_copy_A(LdsmCopy<Element>{}, mma);
    auto copy_k = make_tiled_copy_B(LdsmCopy<Element>{}, mma);
    auto copy_v = make_tiled_copy_B(LdsmCopyTransposed<Element>{}, mma);
    Tensor tSsQ = copy_q.get_thread_slice(tid).partition_S(sQ);    // (CPY, CPY_M, MMA_K)
    Tensor tSsK = copy_k.get_thread_slice(tid).partition_S(sK);    // (CPY, CPY_N, MMA_K)
    Tensor tOsVt = copy_v.get_thread_slice(tid).partition_S(sVt);  // (CPY, CPY_N, MMA_K)

    // Tile coordinates (row, col) of every score this thread holds, as (rows, cols) like the scores.
    Tensor tScS = thr_mma.partition_C(make_identity_tensor(Shape<Int<kM>, Int<kN>>{}));  // (MMA, MMA_M, MMA_N)
    auto coord = rowcol(tScS);
    static_assert(decltype(size<0>(coord))::value == kRows);

    // Visible keys [lo, hi) of each row this thread owns, computed once.
    int lo[kRows], hi[kRows];
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
        const int row = get<0>(coord(r, 0));
        const core::RowLimits l = rows.valid(row) ? band.limits(rows.query(row)) : core::RowLimits{};
        lo[r] = int(l.lo);
        hi[r] = int(l.hi);
    }

    // Rows with a visible key, which the softmax cannot tell from masked scores: a row the mask
    // leaves empty keeps out 0, lse -inf; one whose visible scores are all -inf gets NaN. A band
    // row is empty iff lo >= hi (mask_mod is the band per element); block-sparse rows learn it per tile.
    bool seen[kRows];
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) seen[r] = p.mask_kind != MaskKind::block_sparse && lo[r] < hi[r];

    OnlineSoftmax<kRows> softmax;
    softmax.reset();
    clear(acc_o);

    const int count = sched.count();
    if (count > 0) {
        load_q();
        load_kv(sK, k_head, p.k_strides.row, sched.tile(0));
        cp_async_fence();
    }

    auto step = [&](int k, int t, int t_next, auto masked) {
        constexpr bool kMasked = decltype(masked)::value;
        Tensor acc_s = partition_fragment_C(mma, Shape<Int<kM>, Int<kN>>{});  // (MMA, MMA_M, MMA_N)
        clear(acc_s);
        cp_async_wait<0>();
        __syncthreads();  // K(t) (and Q) landed; every warp is done reading V of the previous tile
        load_kv(sV, v_head, p.v_strides.row, t);
        cp_async_fence();

        gemm_ss(acc_s, tSrQ, tSrK, tSsQ, tSsK, mma, copy_q, copy_k, tid);
        CUTE_UNROLL
        for (int i = 0; i < size(acc_s); ++i) acc_s(i) *= p.scale_log2;  // any sign of scale works
        auto s = rowcol(acc_s);
        if constexpr (kMasked) {
            const int n0 = t * kN;
            if (p.mask_kind == MaskKind::band || p.mask_kind == MaskKind::band_tensors) {
                gpu::mask_band(s, coord, lo, hi, n0);
            } else {
                // Per element, as a user predicate would be: nothing precomputed per row.
                const QTileRows cta = QTileRows::of_cta(p, kM);
                const gpu::ElementBand visible(cta.band(p).formula);
                gpu::mask_elements(s, coord, [&](int r, int col) {
                    const bool v = visible(cta.query32(get<0>(coord(r, 0))), std::int64_t(n0) + col);
                    seen[r] = seen[r] || v;
                    return v;
                });
            }
        } else {
            CUTE_UNROLL
            for (int r = 0; r < kRows; ++r) seen[r] = true;  // a full tile: every key visible
        }

        cp_async_wait<0>();
        __syncthreads();  // V(t) landed; every warp is done reading K(t)
        if (k + 1 < count) {
            load_kv(sK, k_head, p.k_strides.row, t_next);
            cp_async_fence();
        }

        auto o = rowcol(acc_o);
        softmax.template update<kMasked>(s, o);
        Tensor rP = convert_fragment<Element>(acc_s);
        Tensor tOrP = make_tensor(rP.data(), acc_as_a_layout(rP.layout()));  // ((4, 2), MMA_M, N/16)
        gemm_rs(acc_o, tOrP, tOrVt, tOsVt, mma, copy_v, tid);
    };

    int t = count > 0 ? sched.tile(0) : 0;
    for (int k = 0; k < count; ++k) {
        const int t_next = k + 1 < count ? sched.tile(k + 1) : 0;
        if (sched.masked(k, t)) step(k, t, t_next, true_type{});
        else step(k, t, t_next, false_type{});
        t = t_next;
    }

    // Epilogue: normalize, stage O through shared memory (sQ's bytes: every warp passed the barrier after
    // its last Q K^T, or never loaded Q), then 16-byte row stores; lse from the thread at column 0.
    const QTileRows out_rows = QTileRows::of_cta(p, kM);
    float lse[kRows];
    auto o = rowcol(acc_o);
    softmax.finalize(o, lse, seen);
    Tensor rO = convert_fragment<Element>(acc_o);
    auto copy_o = make_tiled_copy_C(AccumStoreCopy<Element>{}, mma);
    auto thr_copy_o = copy_o.get_thread_slice(tid);
    copy(copy_o, thr_copy_o.retile_S(rO), thr_copy_o.partition_D(sO));
    __syncthreads();
    auto* out = static_cast<Element*>(p.out);
    store_rows<kThreads>(sO, tid, [&](int r) -> Element* {
        return out_rows.valid(r) ? out + out_rows.offset(p.out_strides, r) : nullptr;
    });
    if (p.lse != nullptr && get<1>(coord(0, 0)) == 0) {
        CUTE_UNROLL
        for (int r = 0; r < kRows; ++r) {
            const int row = get<0>(coord(r, 0));
            if (out_rows.valid(row))
                p.lse[core::lse_offset(p, out_rows.b, out_rows.seq.row_q, out_rows.query(row), out_rows.head(row))] = lse[r];
        }
    }
}

template <int kDqk, int kDv, DType kDType>
Status run_forward(const core::AttnParams& p) {
    using T = ForwardTraits<kDqk, kDv, kDType>;
    const bool sparse = p.mask_kind == MaskKind::block_sparse;
    const std::int64_t m_tiles = core::num_tiles(p.seqlen_q * (sparse ? 1 : p.group), T::kTileM);
    const int slots = sparse ? p.heads_q : p.heads_kv;
    if (m_tiles == 0 || p.batch == 0) return Status::success();
    if (m_tiles > INT_MAX) return Status::unsupported("q", "too many query rows for one launch");
    if (slots > 65535) return Status::unsupported(sparse ? "q" : "k", "more than 65535 heads");
    if (p.batch > 65535) return Status::unsupported("q", "batch larger than 65535");

    int device = 0, smem_optin = 0;
    Status s = cuda::cuda_status(cudaGetDevice(&device), "cudaGetDevice");
    if (!s.ok()) return s;
    s = cuda::cuda_status(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
                          "cudaDeviceGetAttribute");
    if (!s.ok()) return s;
    if (smem_optin < T::kSmemBytes)
        return Status::unsupported("q", "head dims " + std::to_string(kDqk) + "/" + std::to_string(kDv) + " need " +
                                            std::to_string(T::kSmemBytes) + " bytes of shared memory per block; this GPU offers " +
                                            std::to_string(smem_optin));
    auto kernel = forward_kernel<T>;
    s = cuda::cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, T::kSmemBytes),
                          "cudaFuncSetAttribute");
    if (!s.ok()) return s;
    const dim3 grid(unsigned(m_tiles), unsigned(slots), unsigned(p.batch));
    kernel<<<grid, T::kThreads, T::kSmemBytes, static_cast<cudaStream_t>(p.stream)>>>(p);
    return cuda::cuda_status(cudaGetLastError(), "forward kernel launch");
}

}  // namespace ccattn::sm80
