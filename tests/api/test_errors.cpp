// Every bad input of docs/semantics.md "Errors", through the public forward and backward: the call
// fails, names the offending argument, and leaves every output byte as it was.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "api/problem.h"
#include "ccattn/ccattn.h"

namespace ccattn::test {
namespace {

// A stride that takes any dimension of size >= 2 past the 2^62 offsets validation allows.
constexpr std::int64_t kHuge = std::int64_t(1) << 62;

// A valid call's storage: the problem, block-sparse lists for it and spare arrays to point at.
struct Fixture {
    static Dims fixed_dims() { return Dims{}; }
    static Dims varlen_dims() {
        Dims d;
        d.cu_q = {0, 4, 10};
        d.cu_k = {0, 9, 14};
        return d;
    }

    explicit Fixture(bool varlen) : p(varlen ? varlen_dims() : fixed_dims()) {
        // Block-sparse lists for the fixed problem (B 2, Sq 5, Sk 7), tiles 2 x 3: 3 q-tiles, 3 kv-tiles,
        // every kv tile listed as partial, none full; one list shared by all heads.
        full_count.assign(2 * 3, 0);
        full_index.assign(2 * 3 * 1, 0);
        partial_count.assign(2 * 3, 3);
        for (int e = 0; e < 2 * 3; ++e)
            for (int t = 0; t < 3; ++t) partial_index.push_back(t);
        sparse.kind = MaskKind::block_sparse;
        BlockSparseMask& bs = sparse.block_sparse;
        bs.tile_m = 2;
        bs.tile_n = 3;
        bs.full_count = Tensor::contiguous(full_count.data(), DType::int32, {2, 1, 3});
        bs.full_index = Tensor::contiguous(full_index.data(), DType::int32, {2, 1, 3, 1});
        bs.partial_count = Tensor::contiguous(partial_count.data(), DType::int32, {2, 1, 3});
        bs.partial_index = Tensor::contiguous(partial_index.data(), DType::int32, {2, 1, 3, 3});
        bs.mask_mod = [](int, int, std::int64_t i, std::int64_t j) { return j <= i + 2; };
    }

    Problem p;
    Mask sparse;
    std::vector<std::int32_t> full_count, full_index, partial_count, partial_index;
    std::vector<std::int32_t> spare_cu;
};

// Points a varlen call's cu_seqlens at new values.
Tensor cu_tensor(Fixture& f, std::vector<std::int32_t> values) {
    f.spare_cu = std::move(values);
    return Tensor::contiguous(f.spare_cu.data(), DType::int32, {std::int64_t(f.spare_cu.size())});
}

void set_shape(Tensor& t, std::initializer_list<std::int64_t> shape) {
    t = Tensor::contiguous(t.data, t.dtype, shape, t.device);
}

void misalign(Tensor& t, int bytes) { t.data = static_cast<char*>(t.data) + bytes; }

template <class Args>
struct BadCase {
    std::string name;
    bool varlen;
    std::function<void(Fixture&, Args&)> mutate;
    Code code;
    std::string argument;
};
using BadForward = BadCase<ForwardArgs>;
using BadBackward = BadCase<BackwardArgs>;

template <class Args>
std::ostream& operator<<(std::ostream& os, const BadCase<Args>& c) {
    return os << c.name;
}

const Code kInvalid = Code::invalid_argument;
const Code kUnsupported = Code::unsupported;

std::vector<BadForward> bad_forward_cases() {
    using F = Fixture;
    using A = ForwardArgs;
    return {
        // dtypes
        {"q_fp32", false, [](F&, A& a) { a.q.dtype = DType::fp32; }, kInvalid, "q"},
        {"q_int32", false, [](F&, A& a) { a.q.dtype = DType::int32; }, kInvalid, "q"},
        {"k_fp16_with_bf16_q", false, [](F&, A& a) { a.k.dtype = DType::fp16; }, kInvalid, "k"},
        {"v_fp16_with_bf16_q", false, [](F&, A& a) { a.v.dtype = DType::fp16; }, kInvalid, "v"},
        {"out_fp32", false, [](F&, A& a) { a.out.dtype = DType::fp32; }, kInvalid, "out"},
        {"lse_bf16", false, [](F&, A& a) { a.lse.dtype = DType::bf16; }, kInvalid, "lse"},
        // ranks and shapes
        {"q_rank3_without_cu_seqlens", false, [](F&, A& a) { set_shape(a.q, {10, 4, 16}); }, kInvalid, "q"},
        {"k_rank3", false, [](F&, A& a) { set_shape(a.k, {14, 2, 16}); }, kInvalid, "k"},
        {"v_rank3", false, [](F&, A& a) { set_shape(a.v, {14, 2, 8}); }, kInvalid, "v"},
        {"out_rank3", false, [](F&, A& a) { set_shape(a.out, {10, 4, 8}); }, kInvalid, "out"},
        {"lse_rank2", false, [](F&, A& a) { set_shape(a.lse, {8, 5}); }, kInvalid, "lse"},
        {"k_batch_differs", false, [](F&, A& a) { set_shape(a.k, {1, 7, 2, 16}); }, kInvalid, "k"},
        {"k_head_dim_differs", false, [](F&, A& a) { set_shape(a.k, {2, 7, 2, 8}); }, kInvalid, "k"},
        {"v_seqlen_differs", false, [](F&, A& a) { set_shape(a.v, {2, 6, 2, 8}); }, kInvalid, "v"},
        {"v_heads_differ", false, [](F&, A& a) { set_shape(a.v, {2, 7, 1, 8}); }, kInvalid, "v"},
        {"out_seqlen_differs", false, [](F&, A& a) { set_shape(a.out, {2, 4, 4, 8}); }, kInvalid, "out"},
        {"out_heads_differ", false, [](F&, A& a) { set_shape(a.out, {2, 5, 2, 8}); }, kInvalid, "out"},
        {"out_dim_differs", false, [](F&, A& a) { set_shape(a.out, {2, 5, 4, 4}); }, kInvalid, "out"},
        {"lse_seqlen_differs", false, [](F&, A& a) { set_shape(a.lse, {2, 4, 4}); }, kInvalid, "lse"},
        {"lse_sequence_major", false, [](F&, A& a) { set_shape(a.lse, {2, 5, 4}); }, kInvalid, "lse"},
        {"q_negative_size", false, [](F&, A& a) { a.q.shape[1] = -5; }, kInvalid, "q"},
        // heads
        {"heads_not_dividing", false,
         [](F&, A& a) {
             set_shape(a.k, {2, 7, 3, 16});
             set_shape(a.v, {2, 7, 3, 8});
         },
         kInvalid, "k"},
        {"zero_kv_heads", false,
         [](F&, A& a) {
             set_shape(a.k, {2, 7, 0, 16});
             set_shape(a.v, {2, 7, 0, 8});
         },
         kInvalid, "k"},
        {"zero_q_heads", false,
         [](F&, A& a) {
             set_shape(a.q, {2, 5, 0, 16});
             set_shape(a.out, {2, 5, 0, 8});
             set_shape(a.lse, {2, 0, 5});
         },
         kInvalid, "q"},
        // mask parameters
        {"compress_factor_zero", false, [](F&, A& a) { a.mask = Mask::band(true, 0); }, kInvalid,
         "mask.compress_factor"},
        {"compress_factor_negative", false, [](F&, A& a) { a.mask = Mask::band(true, -4); }, kInvalid,
         "mask.compress_factor"},
        {"compress_factor_zero_in_mask_mod", false,
         [](F&, A& a) {
             a.mask.kind = MaskKind::mask_mod;
             a.mask.mask_mod = [](int, int, std::int64_t, std::int64_t) { return true; };
             a.mask.compress_factor = 0;
         },
         kInvalid, "mask.compress_factor"},
        {"window_negative", false, [](F&, A& a) { a.mask = Mask::band(true, 2, {}, -1); }, kInvalid,
         "mask.window_left"},
        {"diag_offset_beyond_2_62", false, [](F&, A& a) { a.mask = Mask::band(true, 1, std::int64_t(1) << 62); },
         kInvalid, "mask.diag_offset"},
        {"diag_offset_below_minus_2_62", false,
         [](F&, A& a) { a.mask = Mask::band(true, 1, -(std::int64_t(1) << 62)); }, kInvalid, "mask.diag_offset"},
        {"compress_factor_2_31", false, [](F&, A& a) { a.mask = Mask::band(true, std::int64_t(1) << 31); }, kInvalid,
         "mask.compress_factor"},
        {"window_2_31", false, [](F&, A& a) { a.mask = Mask::band(true, 4, 0, std::int64_t(1) << 31); }, kInvalid,
         "mask.window_left"},
        // issue 14: lo = floor((i + delta) / cf) - window overflowed, and every row came out empty
        {"window_int64_max", false,
         [](F&, A& a) { a.mask = Mask::band(false, 1, -(std::int64_t(1) << 61), INT64_MAX); }, kInvalid,
         "mask.window_left"},
        {"window_2_31_in_mask_mod", false,
         [](F&, A& a) {
             a.mask = Mask::band(true, 2, 0, std::int64_t(1) << 40);
             a.mask.kind = MaskKind::mask_mod;
             a.mask.mask_mod = [](int, int, std::int64_t, std::int64_t) { return true; };
         },
         kInvalid, "mask.window_left"},
        {"mask_mod_empty", false, [](F&, A& a) { a.mask.kind = MaskKind::mask_mod; }, kInvalid, "mask.mask_mod"},
        {"custom_band_without_hi", false,
         [](F&, A& a) {
             a.mask.kind = MaskKind::custom_band;
             a.mask.custom_band.lo = [](int, std::int64_t) { return std::int64_t(0); };
         },
         kInvalid, "mask.custom_band"},
        // head dims
        {"head_dim_1024", false,
         [](F&, A& a) {
             set_shape(a.q, {2, 5, 4, 1024});
             set_shape(a.k, {2, 7, 2, 1024});
         },
         kUnsupported, "q"},
        {"head_dim_zero", false,
         [](F&, A& a) {
             set_shape(a.q, {2, 5, 4, 0});
             set_shape(a.k, {2, 7, 2, 0});
         },
         kUnsupported, "q"},
        {"value_dim_600", false,
         [](F&, A& a) {
             set_shape(a.v, {2, 7, 2, 600});
             set_shape(a.out, {2, 5, 4, 600});
         },
         kUnsupported, "v"},
        // layout: contiguity, alignment, offsets
        {"q_last_dim_strided", false, [](F&, A& a) { a.q.stride[3] = 2; }, kInvalid, "q"},
        {"k_last_dim_strided", false, [](F&, A& a) { a.k.stride[3] = 2; }, kInvalid, "k"},
        {"v_last_dim_strided", false, [](F&, A& a) { a.v.stride[3] = 3; }, kInvalid, "v"},
        {"out_last_dim_strided", false, [](F&, A& a) { a.out.stride[3] = 2; }, kInvalid, "out"},
        {"lse_last_dim_strided", false, [](F&, A& a) { a.lse.stride[2] = 2; }, kInvalid, "lse"},
        {"q_misaligned", false, [](F&, A& a) { misalign(a.q, 1); }, kInvalid, "q"},
        {"v_misaligned", false, [](F&, A& a) { misalign(a.v, 1); }, kInvalid, "v"},
        {"out_misaligned", false, [](F&, A& a) { misalign(a.out, 1); }, kInvalid, "out"},
        {"lse_misaligned", false, [](F&, A& a) { misalign(a.lse, 2); }, kInvalid, "lse"},
        {"q_offsets_overflow", false, [](F&, A& a) { a.q.stride[0] = kHuge; }, kInvalid, "q"},
        {"q_sizes_overflow_int64", false,
         [](F&, A& a) {
             a.q.shape[1] = std::int64_t(1) << 40;
             a.q.stride[1] = std::int64_t(1) << 24;
         },
         kInvalid, "q"},
        {"k_offsets_overflow", false, [](F&, A& a) { a.k.stride[1] = kHuge; }, kInvalid, "k"},
        {"out_offsets_overflow", false, [](F&, A& a) { a.out.stride[2] = kHuge; }, kInvalid, "out"},
        {"lse_offsets_overflow", false, [](F&, A& a) { a.lse.stride[1] = kHuge; }, kInvalid, "lse"},
        {"v_negative_stride", false, [](F&, A& a) { a.v.stride[1] = -16; }, kInvalid, "v"},
        // null pointers
        {"q_null", false, [](F&, A& a) { a.q.data = nullptr; }, kInvalid, "q"},
        {"k_null", false, [](F&, A& a) { a.k.data = nullptr; }, kInvalid, "k"},
        {"v_null", false, [](F&, A& a) { a.v.data = nullptr; }, kInvalid, "v"},
        {"out_null", false, [](F&, A& a) { a.out.data = nullptr; }, kInvalid, "out"},
        // other arguments
        {"scale_nan", false, [](F&, A& a) { a.scale = std::nanf(""); }, kInvalid, "scale"},
        {"scale_infinite", false, [](F&, A& a) { a.scale = INFINITY; }, kInvalid, "scale"},
        {"num_threads_negative", false, [](F&, A& a) { a.num_threads = -1; }, kInvalid, "num_threads"},
        {"num_splits_negative", false, [](F&, A& a) { a.num_splits = -1; }, kInvalid, "num_splits"},
        {"num_splits_too_many", false, [](F&, A& a) { a.num_splits = 257; }, kInvalid, "num_splits"},
        // devices and backends
        {"k_on_another_device", false, [](F&, A& a) { a.k.device = Device::cuda; }, kInvalid, "k"},
        {"cuda_backend_on_host_tensors", false, [](F&, A& a) { a.backend = Backend::cuda; }, kInvalid, "backend"},
        {"cpu_backend_on_device_tensors", false,
         [](F&, A& a) {
             for (Tensor* t : {&a.q, &a.k, &a.v, &a.out, &a.lse}) t->device = Device::cuda;
         },
         kInvalid, "backend"},
        // varlen
        {"cu_seqlens_q_not_monotone", true, [](F& f, A& a) { a.cu_seqlens_q = cu_tensor(f, {0, 11, 10}); }, kInvalid,
         "cu_seqlens_q"},
        {"cu_seqlens_k_not_starting_at_0", true, [](F& f, A& a) { a.cu_seqlens_k = cu_tensor(f, {1, 9, 14}); },
         kInvalid, "cu_seqlens_k"},
        {"cu_seqlens_q_last_below_total", true, [](F& f, A& a) { a.cu_seqlens_q = cu_tensor(f, {0, 4, 9}); }, kInvalid,
         "cu_seqlens_q"},
        {"cu_seqlens_k_last_above_total", true, [](F& f, A& a) { a.cu_seqlens_k = cu_tensor(f, {0, 9, 15}); }, kInvalid,
         "cu_seqlens_k"},
        {"cu_seqlens_k_longer_than_q", true, [](F& f, A& a) { a.cu_seqlens_k = cu_tensor(f, {0, 9, 12, 14}); },
         kInvalid, "cu_seqlens_k"},
        {"cu_seqlens_q_fp32", true, [](F&, A& a) { a.cu_seqlens_q.dtype = DType::fp32; }, kInvalid, "cu_seqlens_q"},
        {"cu_seqlens_k_bf16", true, [](F&, A& a) { a.cu_seqlens_k.dtype = DType::bf16; }, kInvalid, "cu_seqlens_k"},
        {"cu_seqlens_q_rank2", true, [](F&, A& a) { set_shape(a.cu_seqlens_q, {3, 1}); }, kInvalid, "cu_seqlens_q"},
        {"cu_seqlens_q_empty", true, [](F&, A& a) { set_shape(a.cu_seqlens_q, {0}); }, kInvalid, "cu_seqlens_q"},
        {"cu_seqlens_q_strided", true, [](F&, A& a) { a.cu_seqlens_q.stride[0] = 2; }, kInvalid, "cu_seqlens_q"},
        {"cu_seqlens_k_misaligned", true, [](F&, A& a) { misalign(a.cu_seqlens_k, 2); }, kInvalid, "cu_seqlens_k"},
        {"only_cu_seqlens_q", true, [](F&, A& a) { a.cu_seqlens_k = Tensor{}; }, kInvalid, "cu_seqlens_k"},
        {"only_cu_seqlens_k", true, [](F&, A& a) { a.cu_seqlens_q = Tensor{}; }, kInvalid, "cu_seqlens_q"},
        {"varlen_q_rank4", true, [](F&, A& a) { set_shape(a.q, {1, 10, 4, 16}); }, kInvalid, "q"},
        // unchecked cu_seqlens: host ones are still checked, device ones need the bounds
        {"unchecked_host_cu_seqlens_not_monotone", true,
         [](F& f, A& a) {
             a.varlen.check_cu_seqlens = false;
             a.varlen.max_seqlen_q = a.varlen.max_seqlen_k = 10;
             a.cu_seqlens_q = cu_tensor(f, {0, 11, 10});
         },
         kInvalid, "cu_seqlens_q"},
        {"max_seqlen_q_below_the_longest", true, [](F&, A& a) { a.varlen.max_seqlen_q = 5; }, kInvalid,
         "max_seqlen_q"},
        {"max_seqlen_k_negative", true, [](F&, A& a) { a.varlen.max_seqlen_k = -1; }, kInvalid, "max_seqlen_k"},
        {"unchecked_device_cu_seqlens_without_max_seqlen", true,
         [](F&, A& a) {
             for (Tensor* t : {&a.q, &a.k, &a.v, &a.out, &a.lse, &a.cu_seqlens_q, &a.cu_seqlens_k})
                 t->device = Device::cuda;
             a.varlen.check_cu_seqlens = false;
             a.varlen.max_seqlen_k = 9;
         },
         kInvalid, "max_seqlen_q"},
        {"varlen_lse_rank3", true, [](F&, A& a) { set_shape(a.lse, {1, 4, 10}); }, kInvalid, "lse"},
        {"varlen_k_rows_differ_from_v", true, [](F&, A& a) { set_shape(a.v, {13, 2, 8}); }, kInvalid, "v"},
        // block-sparse lists
        {"block_sparse_tile_m_zero", false,
         [](F& f, A& a) {
             a.mask = f.sparse;
             a.mask.block_sparse.tile_m = 0;
         },
         kInvalid, "mask.block_sparse.tile_m"},
        {"block_sparse_tile_n_negative", false,
         [](F& f, A& a) {
             a.mask = f.sparse;
             a.mask.block_sparse.tile_n = -3;
         },
         kInvalid, "mask.block_sparse.tile_n"},
        {"block_sparse_count_wrong_tile_count", false,
         [](F& f, A& a) {
             a.mask = f.sparse;
             set_shape(a.mask.block_sparse.full_count, {2, 1, 2});
         },
         kInvalid, "mask.block_sparse.full_count"},
        {"block_sparse_count_wrong_heads", false,
         [](F& f, A& a) {
             a.mask = f.sparse;
             set_shape(a.mask.block_sparse.full_count, {1, 2, 3});
         },
         kInvalid, "mask.block_sparse.full_count"},
        {"block_sparse_count_fp32", false,
         [](F& f, A& a) {
             a.mask = f.sparse;
             a.mask.block_sparse.partial_count.dtype = DType::fp32;
         },
         kInvalid, "mask.block_sparse.partial_count"},
        {"block_sparse_count_null", false,
         [](F& f, A& a) {
             a.mask = f.sparse;
             a.mask.block_sparse.partial_count.data = nullptr;
         },
         kInvalid, "mask.block_sparse.partial_count"},
        {"block_sparse_index_rank3", false,
         [](F& f, A& a) {
             a.mask = f.sparse;
             set_shape(a.mask.block_sparse.full_index, {2, 1, 3});
         },
         kInvalid, "mask.block_sparse.full_index"},
        {"block_sparse_index_other_batch", false,
         [](F& f, A& a) {
             a.mask = f.sparse;
             set_shape(a.mask.block_sparse.partial_index, {1, 1, 3, 3});
         },
         kInvalid, "mask.block_sparse.partial_index"},
        {"block_sparse_count_above_slots", false,
         [](F& f, A& a) {
             f.partial_count[4] = 4;
             a.mask = f.sparse;
         },
         kInvalid, "mask.block_sparse.partial_count"},
        {"block_sparse_count_negative", false,
         [](F& f, A& a) {
             f.full_count[1] = -1;
             a.mask = f.sparse;
         },
         kInvalid, "mask.block_sparse.full_count"},
        {"block_sparse_tile_listed_twice", false,
         [](F& f, A& a) {
             f.partial_index[7] = f.partial_index[6];  // (b 0, q-tile 2) lists kv tile 0 twice
             a.mask = f.sparse;
         },
         kInvalid, "mask.block_sparse.partial_index"},
        {"block_sparse_tile_full_and_partial", false,
         [](F& f, A& a) {
             f.full_count[2] = 1;  // (b 0, q-tile 2): kv tile 0 both full and partial
             f.full_index[2] = 0;
             a.mask = f.sparse;
         },
         kInvalid, "mask.block_sparse.partial_index"},
        {"block_sparse_index_past_last_tile", false,
         [](F& f, A& a) {
             f.partial_index[7] = 3;
             a.mask = f.sparse;
         },
         kInvalid, "mask.block_sparse.partial_index"},
        {"block_sparse_index_negative", false,
         [](F& f, A& a) {
             f.full_count[5] = 1;
             f.full_index[5] = -1;
             a.mask = f.sparse;
         },
         kInvalid, "mask.block_sparse.full_index"},
        {"block_sparse_without_mask_mod", false,
         [](F& f, A& a) {
             a.mask = f.sparse;
             a.mask.block_sparse.mask_mod = nullptr;
         },
         kInvalid, "mask.block_sparse.mask_mod"},
    };
}

std::vector<BadBackward> bad_backward_cases() {
    using F = Fixture;
    using A = BackwardArgs;
    return {
        {"lse_missing", false, [](F&, A& a) { a.lse = Tensor{}; }, kInvalid, "lse"},
        {"dout_null", false, [](F&, A& a) { a.dout.data = nullptr; }, kInvalid, "dout"},
        {"dq_null", false, [](F&, A& a) { a.dq.data = nullptr; }, kInvalid, "dq"},
        {"dk_null", false, [](F&, A& a) { a.dk.data = nullptr; }, kInvalid, "dk"},
        {"dv_null", false, [](F&, A& a) { a.dv.data = nullptr; }, kInvalid, "dv"},
        {"out_null", false, [](F&, A& a) { a.out.data = nullptr; }, kInvalid, "out"},
        {"dout_shape", false, [](F&, A& a) { set_shape(a.dout, {2, 5, 4, 16}); }, kInvalid, "dout"},
        {"dq_fp16", false, [](F&, A& a) { a.dq.dtype = DType::fp16; }, kInvalid, "dq"},
        {"dk_shape", false, [](F&, A& a) { set_shape(a.dk, {2, 7, 4, 16}); }, kInvalid, "dk"},
        {"dv_rank3", false, [](F&, A& a) { set_shape(a.dv, {14, 2, 8}); }, kInvalid, "dv"},
        {"dv_last_dim_strided", false, [](F&, A& a) { a.dv.stride[3] = 2; }, kInvalid, "dv"},
        {"dq_misaligned", false, [](F&, A& a) { misalign(a.dq, 1); }, kInvalid, "dq"},
        {"dk_offsets_overflow", false, [](F&, A& a) { a.dk.stride[0] = kHuge; }, kInvalid, "dk"},
        {"lse_fp16", false, [](F&, A& a) { a.lse.dtype = DType::fp16; }, kInvalid, "lse"},
        {"k_fp16_with_bf16_q", false, [](F&, A& a) { a.k.dtype = DType::fp16; }, kInvalid, "k"},
        {"heads_not_dividing", false,
         [](F&, A& a) {
             set_shape(a.k, {2, 7, 3, 16});
             set_shape(a.v, {2, 7, 3, 8});
         },
         kInvalid, "k"},
        {"compress_factor_zero", false, [](F&, A& a) { a.mask = Mask::band(true, 0); }, kInvalid,
         "mask.compress_factor"},
        {"window_negative", false, [](F&, A& a) { a.mask = Mask::band(false, 1, {}, -7); }, kInvalid,
         "mask.window_left"},
        {"cuda_backend_on_host_tensors", false, [](F&, A& a) { a.backend = Backend::cuda; }, kInvalid, "backend"},
        {"cu_seqlens_q_not_monotone", true, [](F& f, A& a) { a.cu_seqlens_q = cu_tensor(f, {0, 11, 10}); }, kInvalid,
         "cu_seqlens_q"},
        {"only_cu_seqlens_q", true, [](F&, A& a) { a.cu_seqlens_k = Tensor{}; }, kInvalid, "cu_seqlens_k"},
        {"block_sparse_index_past_last_tile", false,
         [](F& f, A& a) {
             f.partial_index[0] = 99;
             a.mask = f.sparse;
         },
         kInvalid, "mask.block_sparse.partial_index"},
    };
}

template <class Case>
std::string case_name(const ::testing::TestParamInfo<Case>& info) {
    return info.param.name;
}

class BadForwardInput : public ::testing::TestWithParam<BadForward> {};

TEST_P(BadForwardInput, RejectedNamedAndNothingWritten) {
    const BadForward& c = GetParam();
    Fixture f(c.varlen);
    ForwardArgs a = f.p.forward_args();
    c.mutate(f, a);
    const Problem::Snapshot before = f.p.snapshot();
    const Status s = ccattn::forward(a);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(int(s.code), int(c.code)) << s.to_string();
    EXPECT_EQ(s.argument, c.argument) << s.to_string();
    EXPECT_FALSE(s.message.empty());
    EXPECT_TRUE(f.p.snapshot() == before) << "a rejected call wrote its outputs";
}

INSTANTIATE_TEST_SUITE_P(Api, BadForwardInput, ::testing::ValuesIn(bad_forward_cases()), case_name<BadForward>);

class BadBackwardInput : public ::testing::TestWithParam<BadBackward> {};

TEST_P(BadBackwardInput, RejectedNamedAndNothingWritten) {
    const BadBackward& c = GetParam();
    Fixture f(c.varlen);
    BackwardArgs a = f.p.backward_args();
    c.mutate(f, a);
    const Problem::Snapshot before = f.p.snapshot();
    const Status s = ccattn::backward(a);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(int(s.code), int(c.code)) << s.to_string();
    EXPECT_EQ(s.argument, c.argument) << s.to_string();
    EXPECT_FALSE(s.message.empty());
    EXPECT_TRUE(f.p.snapshot() == before) << "a rejected call wrote its gradients";
}

INSTANTIATE_TEST_SUITE_P(Api, BadBackwardInput, ::testing::ValuesIn(bad_backward_cases()), case_name<BadBackward>);

// The unmodified fixtures are accepted, so each rejection above is due to its one change.
TEST(ApiBaselines, FixturesAreValid) {
    for (bool varlen : {false, true}) {
        Fixture f(varlen);
        Status s = ccattn::forward(f.p.forward_args());
        ASSERT_TRUE(s.ok()) << s.to_string();
        s = ccattn::backward(f.p.backward_args());
        ASSERT_TRUE(s.ok()) << s.to_string();
    }
    Fixture f(false);
    ForwardArgs a = f.p.forward_args();
    a.mask = f.sparse;
    Status s = ccattn::forward(a);
    EXPECT_TRUE(s.ok()) << s.to_string();
}

// Tensors marked as device memory, Backend::automatic, on a machine or build without CUDA.
TEST(ApiBackend, DeviceTensorsWithoutCudaAreUnavailable) {
    if (ccattn::cuda_available()) GTEST_SKIP() << "a CUDA device is visible";
    Fixture f(false);
    ForwardArgs a = f.p.forward_args();
    a.backend = Backend::automatic;
    for (Tensor* t : {&a.q, &a.k, &a.v, &a.out, &a.lse}) t->device = Device::cuda;
    const Problem::Snapshot before = f.p.snapshot();
    Status s = ccattn::forward(a);
    EXPECT_EQ(int(s.code), int(Code::backend_unavailable)) << s.to_string();
    EXPECT_EQ(s.argument, "backend");
    a.backend = Backend::cuda;
    s = ccattn::forward(a);
    EXPECT_EQ(int(s.code), int(Code::backend_unavailable)) << s.to_string();
    EXPECT_TRUE(f.p.snapshot() == before);
}

}  // namespace
}  // namespace ccattn::test
