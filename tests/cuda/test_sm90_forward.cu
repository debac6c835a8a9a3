// The Hopper (sm_90a) forward.
// Host-only checks (run on any machine): the accumulator views the kernel relies on, against CuTe's
// own partitions for every thread; the shared-memory vector contiguity the Q gather and O scatter
// rely on; what supports() accepts (the work order and kv steps: tests/sm90/test_schedule.cpp).
// GPU checks (skipped without a compute capability 9.0 device): sm90::forward against the fp64
// oracle on fresh random inputs with NaN-poisoned outputs, over band shapes, GQA groups, varlen,
// empty rows and tiles, every instantiated head dim and dtype, and the mask_mod and block-sparse
// mechanisms.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <cute/tensor.hpp>

#include "api/validate.h"
#include "ccattn/block_sparse.h"
#include "core/band.h"
#include "core/bound_bands.h"
#include "core/params.h"
#include "cuda/gpu_test_util.h"
#include "cuda/non_finite.h"
#include "sm90/fragment.h"
#include "sm90/kernel_traits.h"
#include "sm90/mask.h"
#include "sm90/sm90.h"

namespace ccattn {
namespace {

using namespace test;
using bf16 = cutlass::bfloat16_t;
using fp16 = cutlass::half_t;

// ---------------------------------------------------------------------------------------------
// Accumulator views and shared-memory layouts (host)

template <class Traits>
void check_fragment_views() {
    using namespace cute;
    constexpr int kRows = Traits::kRowsPerWarpGroup, kN = Traits::kBlockN;
    auto identity = make_identity_tensor(Shape<Int<kRows>, Int<kN>>{});
    auto coords_of = [&](int t) {
        return sm90::rowcol_view(typename Traits::TiledMmaQK{}.get_thread_slice(t).partition_C(identity));
    };
    auto c0 = coords_of(0);
    using Runs = typename sm90::RegisterMask<typename Traits::TiledMmaQK, kRows, kN>::Runs;
    std::map<std::pair<int, int>, int> owner;
    for (int t = 0; t < 128; ++t) {
        auto c = coords_of(t);
        ASSERT_EQ(int(size<0>(c)), 2);
        for (int m = 0; m < size<0>(c); ++m)
            for (int n = 0; n < size<1>(c); ++n) {
                const int row = get<0>(c(m, n)), col = get<1>(c(m, n));
                // (rows, cols) view: one row per m, one column per n
                ASSERT_EQ(row, int(get<0>(c(m, 0)))) << "thread " << t;
                ASSERT_EQ(col, int(get<1>(c(0, n)))) << "thread " << t;
                // columns are thread 0's shifted by this thread's first column (the mask relies on it)
                ASSERT_EQ(col, int(get<1>(c0(0, n))) + int(get<1>(c(0, 0)))) << "thread " << t;
                // and thread 0's run as the mask's bit masks assume (gpu/column_runs.h)
                ASSERT_EQ(int(get<1>(c0(0, n))), Runs::offset(n)) << "column " << n;
                ASSERT_TRUE(owner.emplace(std::make_pair(row, col), t).second) << "element held twice";
            }
        // a row's values sit in the 4 threads of one quad (softmax reduces with xor 1, 2)
        for (int other : {t ^ 1, t ^ 2, t ^ 3}) {
            auto o = coords_of(other);
            for (int m = 0; m < size<0>(c); ++m) ASSERT_EQ(int(get<0>(c(m, 0))), int(get<0>(o(m, 0))));
        }
        // the first thread of each quad holds column 0 of its rows (it writes lse)
        ASSERT_EQ(int(get<1>(c(0, 0))) == 0, t % 4 == 0);
    }
    ASSERT_EQ(int(owner.size()), kRows * kN);

    // S re-read as the register A operand of P V: element by element the same (row, key) as
    // CuTe's A partition of the PV tiled MMA.
    for (int t = 0; t < 128; ++t) {
        auto acc = typename Traits::TiledMmaQK{}.get_thread_slice(t).partition_C(identity);
        auto as_a = make_tensor(acc.data(), sm90::a_operand_layout(acc.layout()));
        auto a = typename Traits::TiledMmaPV{}.get_thread_slice(t).partition_A(identity);
        ASSERT_EQ(int(size(as_a)), int(size(a)));
        for (int i = 0; i < size(a); ++i) {
            ASSERT_EQ(int(get<0>(as_a(i))), int(get<0>(a(i)))) << "thread " << t << " value " << i;
            ASSERT_EQ(int(get<1>(as_a(i))), int(get<1>(a(i)))) << "thread " << t << " value " << i;
        }
    }
}

// The epilogue stores the output accumulators from registers after a transpose of column pairs
// within each quad: in each thread's (rows, cols) view, columns n and n + 1 (n even) are adjacent
// and lie at 8 (n / 2) + 2 (t % 4) of one row.
template <class Traits>
void check_output_pairs() {
    using namespace cute;
    auto identity = make_identity_tensor(Shape<Int<Traits::kRowsPerWarpGroup>, Int<Traits::kDimV>>{});
    for (int t = 0; t < 128; ++t) {
        auto c = sm90::rowcol_view(typename Traits::TiledMmaPV{}.get_thread_slice(t).partition_C(identity));
        for (int m = 0; m < size<0>(c); ++m)
            for (int n = 0; n < size<1>(c); n += 2) {
                // column pair n / 2 of the row: columns 8 (n / 2) + 2 (t % 4), + 1 (the epilogue's quad transpose)
                ASSERT_EQ(int(get<1>(c(m, n))), 8 * (n / 2) + 2 * (t % 4)) << "thread " << t;
                ASSERT_EQ(int(get<1>(c(m, n + 1))), int(get<1>(c(m, n))) + 1) << "thread " << t;
                ASSERT_EQ(int(get<0>(c(m, n + 1))), int(get<0>(c(m, n)))) << "thread " << t;
            }
    }
}

// The Q gather moves 8 elements of a row as one 16-byte vector.
template <class Layout>
void check_row_vectors(Layout layout, int rows, int cols) {
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; c += 8) {
            ASSERT_EQ(int(layout(r, c)) % 8, 0);
            for (int e = 1; e < 8; ++e) ASSERT_EQ(int(layout(r, c + e)), int(layout(r, c)) + e) << r << ", " << c;
        }
}

template <class Traits>
void check_traits() {
    check_fragment_views<Traits>();
    check_output_pairs<Traits>();
    check_row_vectors(typename Traits::SmemLayoutQ{}, Traits::kRowsPerWarpGroup, Traits::kDimQK);
}

TEST(Sm90Layout, Dim64) { check_traits<sm90::KernelTraits<bf16, 64, 64>>(); }
TEST(Sm90Layout, Dim128) { check_traits<sm90::KernelTraits<bf16, 128, 128>>(); }
TEST(Sm90Layout, Dim192x128) { check_traits<sm90::KernelTraits<fp16, 192, 128>>(); }
TEST(Sm90Layout, Dim256) { check_traits<sm90::KernelTraits<fp16, 256, 256>>(); }

// ---------------------------------------------------------------------------------------------
// supports() (host)

core::AttnParams supported_params() {
    core::AttnParams p;
    p.batch = 1;
    p.seqlen_q = p.seqlen_k = p.total_q = p.total_k = 256;
    p.heads_q = p.heads_kv = 1;
    p.dim_qk = p.dim_v = 128;
    p.device = Device::cuda;
    alignas(16) static char buffer[16];
    p.q = p.k = p.v = p.out = buffer;
    p.q_strides = p.k_strides = p.v_strides = p.out_strides = {256 * 128, 128, 128};
    p.scale = 0.125f;
    p.scale_log2 = 0.125f * 1.4426950408889634f;
    return p;
}

TEST(Sm90Supports, AcceptsAndRejects) {
    EXPECT_TRUE(sm90::supports(supported_params()));
    for (auto [dqk, dv] : {std::pair{64, 64}, {192, 128}, {256, 256}}) {
        core::AttnParams p = supported_params();
        p.dim_qk = dqk;
        p.dim_v = dv;
        p.dtype = DType::fp16;
        EXPECT_TRUE(sm90::supports(p)) << dqk << "/" << dv;
    }
    auto rejected = [](auto edit, const char* argument) {
        core::AttnParams p = supported_params();
        edit(p);
        Status s = sm90::unsupported_reason(p);
        EXPECT_EQ(s.code, Code::unsupported) << argument;
        EXPECT_EQ(s.argument, argument);
        EXPECT_EQ(sm90::forward(p).code, Code::unsupported) << argument;
    };
    rejected([](core::AttnParams& p) { p.dim_qk = p.dim_v = 96; }, "q");
    rejected([](core::AttnParams& p) { p.dim_v = 64; }, "q");
    rejected([](core::AttnParams& p) { p.device = Device::cpu; }, "q");
    rejected([](core::AttnParams& p) { p.k_strides.row = 132; }, "k");
    rejected([](core::AttnParams& p) { p.v = static_cast<const char*>(p.v) + 2; }, "v");
    rejected(
        [](core::AttnParams& p) {
            p.heads_q = p.group = 2;
            p.out_strides.head = 4;
        },
        "out");
    rejected(
        [](core::AttnParams& p) {
            p.batch = 2;
            p.q_strides.batch = 12;
        },
        "q");
    {  // strides of extent-1 dimensions never move a pointer
        core::AttnParams p = supported_params();
        p.q_strides.batch = 12;
        p.k_strides.head = 3;
        EXPECT_TRUE(run_ok(sm90::unsupported_reason(p)));
    }
    rejected([](core::AttnParams& p) { p.scale_log2 = 0.f; }, "scale");
    rejected([](core::AttnParams& p) { p.mask_kind = MaskKind::custom_band; }, "mask.custom_band");
    rejected(
        [](core::AttnParams& p) {
            p.mask_kind = MaskKind::block_sparse;
            p.sparse_tile_m = 128;
            p.sparse_tile_n = 64;
        },
        "mask.block_sparse.tile_m");
    rejected([](core::AttnParams& p) { p.total_k = p.seqlen_k = std::int64_t(1) << 31; }, "k");
}

// ---------------------------------------------------------------------------------------------
// GPU: sm90::forward against the fp64 oracle

bool hopper_present() {
    int count = 0, device = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        cudaGetLastError();
        return false;
    }
    cudaDeviceProp prop;
    if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) return false;
    return prop.major == 9 && prop.minor == 0;
}

#define REQUIRE_HOPPER()                                                                           \
    do {                                                                                           \
        if (!hopper_present()) GTEST_SKIP() << "no compute capability 9.0 device (sm90 kernels)"; \
    } while (0)

enum class Mechanism { band, mask_mod, block_sparse };

// Runs sm90::forward on pr with `band` expressed through `mechanism`, and compares out and lse with
// the fp64 oracle of the band.
void run_case(const Problem& pr, const Mask& band, Mechanism mechanism = Mechanism::band) {
    AttnTensors t = make_forward_tensors(pr);
    Mask ref_mask = band, gpu_mask = band;
    DeviceBlockSparse lists;
    if (mechanism == Mechanism::mask_mod) {
        gpu_mask.kind = MaskKind::mask_mod;
        ref_mask = gpu_mask;
        std::vector<std::int64_t> sq, sk;
        for (int b = 0; b < pr.num_seqs(); ++b) {
            sq.push_back(pr.varlen() ? pr.cu_seqlens_q[b + 1] - pr.cu_seqlens_q[b] : pr.seqlen_q);
            sk.push_back(pr.varlen() ? pr.cu_seqlens_k[b + 1] - pr.cu_seqlens_k[b] : pr.seqlen_k);
        }
        const core::BandSpec spec = api::band_spec(band);
        ref_mask.mask_mod = [spec, sq, sk](int b, int, std::int64_t i, std::int64_t j) {
            return core::visible(spec.for_sequence(sq[b], sk[b]), i, j);
        };
    } else if (mechanism == Mechanism::block_sparse) {
        // The reference stays the band: partial tiles are masked with the band's fields.
        const sm90::TileSize tile = sm90::tile_size(pr.dim_qk, pr.dim_v);
        gpu_mask = block_sparse_mask(band, pr, tile.block_m, tile.block_n, lists);
    }

    core::AttnParams p;
    api::HostSeqlens seqlens;
    if (pr.varlen()) seqlens = {pr.cu_seqlens_q.data(), pr.cu_seqlens_k.data()};
    ASSERT_TRUE(run_ok(api::fill_forward_params(forward_args(t, gpu_mask, Device::cuda), seqlens, p)));
    ASSERT_TRUE(run_ok(sm90::unsupported_reason(p)));
    ASSERT_TRUE(run_ok(sm90::forward(p)));
    cuda_check(cudaDeviceSynchronize(), "sm90 forward");
    t.out.download();
    t.lse.download();
    const cpu::Reference ref = reference(t, ref_mask);
    EXPECT_TRUE(close_to_dense(t.out, ref.out, output_tolerance(pr.dtype), "out"));
    EXPECT_TRUE(lse_close(t.lse, ref.lse, "lse"));
    EXPECT_TRUE(untouched_outside_view(t.out, "out"));
    EXPECT_TRUE(untouched_outside_view(t.lse, "lse"));
}

Problem fixed(std::int64_t sq, std::int64_t sk, int heads_kv = 1, int group = 1, int dim_qk = 128, int dim_v = 128,
              DType dtype = DType::bf16) {
    Problem pr;
    pr.seqlen_q = sq;
    pr.seqlen_k = sk;
    pr.heads_kv = heads_kv;
    pr.heads_q = heads_kv * group;
    pr.dim_qk = dim_qk;
    pr.dim_v = dim_v;
    pr.dtype = dtype;
    pr.seed = std::uint64_t(sq * 1000003 + sk * 101 + group * 7 + dim_qk);
    return pr;
}

TEST(Sm90Forward, CausalCf1) {
    REQUIRE_HOPPER();
    {
        SCOPED_TRACE("Sq = Sk = 256, batch 2, 2 heads");
        Problem pr = fixed(256, 256, 2);
        pr.batch = 2;
        run_case(pr, Mask::band(true));
    }
    for (auto [sq, sk] : {std::pair<std::int64_t, std::int64_t>{113, 203}, {203, 113}, {1, 4099}, {4099, 1}, {1, 1}}) {
        SCOPED_TRACE("Sq " + std::to_string(sq) + " Sk " + std::to_string(sk));
        run_case(fixed(sq, sk), Mask::band(true));
    }
}

TEST(Sm90Forward, CompressedBands) {
    REQUIRE_HOPPER();
    struct C {
        std::int64_t sq, sk, cf;
        std::optional<std::int64_t> delta;
    };
    for (const C& c : {C{1000, 250, 4, {}}, C{777, 60, 16, {}}, C{777, 60, 16, -31}, C{4099, 65, 64, {}},
                       C{500, 130, 4, 37}, C{300, 10, 64, -63}}) {
        SCOPED_TRACE("cf " + std::to_string(c.cf) + " delta " + std::to_string(c.delta.value_or(0)) + " Sq " +
                     std::to_string(c.sq));
        run_case(fixed(c.sq, c.sk, 1, 2), Mask::band(true, c.cf, c.delta));
    }
}

TEST(Sm90Forward, EmptyRowsAndTiles) {
    REQUIRE_HOPPER();
    // rows 0..299 see nothing: whole empty q-tiles, then a partially empty one
    run_case(fixed(700, 700, 1, 1), Mask::band(true, 1, -300));
    // every row empty
    run_case(fixed(200, 100, 1, 4), Mask::band(true, 1, -1000));
    // no keys at all
    run_case(fixed(130, 0, 1, 2), Mask::band(false));
}

// The largest cf, window and offsets validation accepts, through every mechanism.
TEST(Sm90Forward, BandsAtTheValidationBounds) {
    REQUIRE_HOPPER();
    for (const BoundBand& b : bands_at_validation_bounds()) {
        SCOPED_TRACE(::testing::Message() << "cf " << b.cf << " delta " << b.delta << " causal " << b.causal
                                          << " window " << b.window.value_or(-1));
        for (Mechanism m : {Mechanism::band, Mechanism::mask_mod, Mechanism::block_sparse})
            run_case(fixed(203, 113, 1, 2), Mask::band(b.causal, b.cf, b.delta, b.window), m);
    }
}

// Non-finite inputs (docs/decisions.md 13) through every mechanism: a NaN or +inf score makes the row
// NaN, rows the mask leaves empty stay empty, a -inf score weighs 0. (A row whose visible scores are
// all -inf still reads as empty on this kernel: decision 13.)
TEST(Sm90Forward, NonFiniteInputs) {
    REQUIRE_HOPPER();
    const Problem pr = non_finite_problem(128, 128, DType::bf16);
    const Mask band = non_finite_band();
    for (Planted what : {Planted::nan_and_inf, Planted::only_minus_inf, Planted::minus_inf_scores})
        for (Mechanism m : {Mechanism::band, Mechanism::mask_mod, Mechanism::block_sparse}) {
            SCOPED_TRACE(std::string(planted_name(what)) + ", mechanism " + std::to_string(int(m)));
            AttnTensors t = make_forward_tensors(pr);
            plant(t, what);
            Mask gpu_mask = band;
            DeviceBlockSparse lists;
            if (m == Mechanism::mask_mod) gpu_mask.kind = MaskKind::mask_mod;
            if (m == Mechanism::block_sparse) {
                const sm90::TileSize tile = sm90::tile_size(pr.dim_qk, pr.dim_v);
                gpu_mask = block_sparse_mask(band, pr, tile.block_m, tile.block_n, lists);
            }
            core::AttnParams p;
            ASSERT_TRUE(run_ok(api::fill_forward_params(forward_args(t, gpu_mask, Device::cuda), {}, p)));
            ASSERT_TRUE(run_ok(sm90::forward(p)));
            cuda_check(cudaDeviceSynchronize(), "sm90 forward");
            t.out.download();
            t.lse.download();
            EXPECT_TRUE(follows_non_finite_rule(t.out, t.lse, reference(t, band), output_tolerance(pr.dtype)));
        }
}

TEST(Sm90Forward, WindowsAndNoMask) {
    REQUIRE_HOPPER();
    run_case(fixed(700, 700), Mask::band(true, 1, {}, 100));
    run_case(fixed(900, 230, 1, 2), Mask::band(true, 4, {}, 10));
    run_case(fixed(203, 113), Mask::band(false));
    run_case(fixed(333, 257, 1, 2), Mask::band(false, 1, 0, 20));  // window without causal: left edge only
}

TEST(Sm90Forward, GqaGroups) {
    REQUIRE_HOPPER();
    // Up to 64: the 128-row tile holds 2 positions. 3 and 12 do not divide a warp group's 64 rows, so
    // their Q is gathered by the consumers instead of the producer's TMA.
    for (int group : {2, 3, 4, 8, 12, 16, 32, 64}) {
        SCOPED_TRACE("group " + std::to_string(group));
        run_case(fixed(113, 203, 2, group), Mask::band(true));
        run_case(fixed(301, 80, 1, group), Mask::band(true, 4));
    }
}

TEST(Sm90Forward, VarlenWithEmptySequences) {
    REQUIRE_HOPPER();
    Problem pr = fixed(0, 0, 2, 4);
    pr.cu_seqlens_q = {0, 0, 113, 113, 700, 701, 1001};
    pr.cu_seqlens_k = {0, 50, 50, 300, 300, 1000, 1013};
    run_case(pr, Mask::band(true));
    run_case(pr, Mask::band(true, 4));
    run_case(pr, Mask::band(false));
}

TEST(Sm90Forward, StridedTensors) {
    REQUIRE_HOPPER();
    Problem pr = fixed(257, 300, 2, 2);
    pr.pad = 8;
    run_case(pr, Mask::band(true, 2));
}

TEST(Sm90Forward, HeadDimsAndDtypes) {
    REQUIRE_HOPPER();
    for (auto [dqk, dv] : {std::pair{64, 64}, {128, 128}, {192, 128}, {256, 256}})
        for (DType dt : {DType::bf16, DType::fp16}) {
            SCOPED_TRACE(std::to_string(dqk) + "/" + std::to_string(dv) + " " + dtype_name(dt));
            run_case(fixed(300, 300, 1, 2, dqk, dv, dt), Mask::band(true));
            run_case(fixed(211, 130, 1, 2, dqk, dv, dt), Mask::band(true, 4, 5));
        }
}

TEST(Sm90Forward, LongCausal) {
    REQUIRE_HOPPER();
    run_case(fixed(2048, 2048, 1, 2), Mask::band(true));
}

// More work tiles than SMs (2 sequences x 8 KV heads x 18 q-tiles at d128, x 12 at d64): after its
// first tile a CTA takes the next one nobody has taken (tile_queue.h), and tiles differ in cost
// under the causal edge and the window. Each call zeroes its own counter: several calls in a row.
TEST(Sm90Forward, DynamicTileSchedule) {
    REQUIRE_HOPPER();
    for (int dim : {128, 64}) {
        SCOPED_TRACE("d " + std::to_string(dim));
        Problem pr = fixed(1100, 1100, 8, 2, dim, dim);
        pr.batch = 2;
        run_case(pr, Mask::band(true));
        run_case(pr, Mask::band(true, 4, {}, 100));
    }
}

// Four CTAs (CCATTN_SM90_GRID) over 32 work tiles (d128: 128 packed rows a tile) or 22 (d64: 192):
// each CTA's producer refills the entries of its four-entry tile ring, the dynamic schedule hands out
// the tiles, and the sanitizer subset's racecheck sees the ring's reuse on a problem small enough for it.
TEST(Sm90Forward, TileRingWraps) {
    REQUIRE_HOPPER();
    struct GridCap {
        GridCap() { setenv("CCATTN_SM90_GRID", "4", 1); }
        ~GridCap() { unsetenv("CCATTN_SM90_GRID"); }
    } cap;
    for (int dim : {128, 64}) {
        SCOPED_TRACE("d " + std::to_string(dim));
        Problem pr = fixed(1024, 1024, 2, 2, dim, dim);
        run_case(pr, Mask::band(true));
        run_case(pr, Mask::band(true, 4, {}, 100));
    }
}

TEST(Sm90Forward, MaskMod) {
    REQUIRE_HOPPER();
    run_case(fixed(300, 300, 1, 2), Mask::band(true, 4), Mechanism::mask_mod);
    Problem pr = fixed(0, 0, 1, 2);
    pr.cu_seqlens_q = {0, 100, 100, 357};
    pr.cu_seqlens_k = {0, 0, 90, 200};
    run_case(pr, Mask::band(true, 1, {}, 30), Mechanism::mask_mod);
}

TEST(Sm90Forward, BlockSparse) {
    REQUIRE_HOPPER();
    run_case(fixed(300, 300, 1, 4), Mask::band(true), Mechanism::block_sparse);
    run_case(fixed(515, 200, 2, 1), Mask::band(true, 4, -3), Mechanism::block_sparse);
    Problem pr = fixed(0, 0, 1, 2);
    pr.cu_seqlens_q = {0, 100, 100, 357};
    pr.cu_seqlens_k = {0, 0, 90, 300};
    run_case(pr, Mask::band(true), Mechanism::block_sparse);
    run_case(fixed(260, 200, 1, 1, 256, 256), Mask::band(true, 2), Mechanism::block_sparse);
}

}  // namespace
}  // namespace ccattn
