// Global <-> shared copies of [rows, dim] tiles whose rows are gathered from (or scattered to) arbitrary
// global addresses: GQA-packed query rows, varlen sequences, strided heads. 16-byte accesses, so every
// global row must be 16-byte aligned (checked on the host).
#pragma once

#include <cstdint>

#include <cute/arch/copy_sm80.hpp>
#include <cute/tensor.hpp>

namespace ccattn::sm80 {

using namespace cute;
using cute::Tensor;  // not ccattn::Tensor

// Thread -> chunk mapping shared by the loads and stores: 8 threads cover one 64-element (128-byte)
// swizzle-atom row, so a warp's accesses fall on distinct banks and 4 whole global segments.
template <int kThreads, int kRows, int kDim, class Element>
struct RowChunks {
    static constexpr int kChunk = 16 / int(sizeof(Element));  // elements per 16-byte access
    static constexpr int kThreadsPerRow = 64 / kChunk;
    static constexpr int kRowsPerPass = kThreads / kThreadsPerRow;
    static constexpr int kPasses = kRows / kRowsPerPass;  // row steps of a thread
    static constexpr int kSteps = kDim / 64;              // column steps of a thread
    static_assert(kDim % 64 == 0 && kRows % kRowsPerPass == 0 && kThreads % kThreadsPerRow == 0);

    // The tile element where thread tid's chunk (pass, step) starts.
    CUTE_HOST_DEVICE static int row(int tid, int pass) { return tid / kThreadsPerRow + pass * kRowsPerPass; }
    CUTE_HOST_DEVICE static int col(int tid, int step) { return (tid % kThreadsPerRow) * kChunk + step * 64; }
};

// Starts 16-byte cp.async copies of a [kRows, kDim] tile into the shared tile `s`. row_ptr(r) gives the
// global address of tile row r (kDim contiguous elements) or nullptr for a row outside the tensor, which
// is zero-filled instead (so that MMAs on it stay finite). The caller commits (cp_async_fence) and waits.
template <int kThreads, class SmemTensor, class RowPtr>
__device__ __forceinline__ void load_rows_async(SmemTensor& s, int tid, RowPtr&& row_ptr) {
    using Element = typename SmemTensor::value_type;
    constexpr int kRows = decltype(size<0>(s))::value;
    constexpr int kDim = decltype(size<1>(s))::value;
    using C = RowChunks<kThreads, kRows, kDim, Element>;
    CUTE_UNROLL
    for (int pass = 0; pass < C::kPasses; ++pass) {
        const int r = C::row(tid, pass);
        const Element* src = row_ptr(r);
        CUTE_UNROLL
        for (int step = 0; step < C::kSteps; ++step) {
            const int c = C::col(tid, step);
            Element* dst = &s(r, c);
            if (src != nullptr) {
                SM80_CP_ASYNC_CACHEGLOBAL<uint128_t>::copy(*reinterpret_cast<const uint128_t*>(src + c),
                                                           *reinterpret_cast<uint128_t*>(dst));
            } else {
                *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
            }
        }
    }
}

// Writes a [kRows, kDim] shared tile to global rows: row_ptr(r) gives the destination of tile row r or
// nullptr for rows that must not be written (beyond the sequence).
template <int kThreads, class SmemTensor, class RowPtr>
__device__ __forceinline__ void store_rows(const SmemTensor& s, int tid, RowPtr&& row_ptr) {
    using Element = typename SmemTensor::value_type;
    constexpr int kRows = decltype(size<0>(s))::value;
    constexpr int kDim = decltype(size<1>(s))::value;
    using C = RowChunks<kThreads, kRows, kDim, Element>;
    CUTE_UNROLL
    for (int pass = 0; pass < C::kPasses; ++pass) {
        const int r = C::row(tid, pass);
        auto* dst = row_ptr(r);
        if (dst == nullptr) continue;
        CUTE_UNROLL
        for (int step = 0; step < C::kSteps; ++step) {
            const int c = C::col(tid, step);
            *reinterpret_cast<uint4*>(dst + c) = *reinterpret_cast<const uint4*>(&s(r, c));
        }
    }
}

}  // namespace ccattn::sm80
