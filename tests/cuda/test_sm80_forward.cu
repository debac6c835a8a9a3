// The portable (sm80) forward kernel.
// Host checks (any machine): the accumulator views the kernel relies on (row ownership, quads, P reused
// as an MMA operand), the shared-memory layouts, the copy mapping, the kv-tile schedule against brute
// force, and the per-element band predicate against core::visible.
// GPU checks (skipped without a device of compute capability >= 8.0): sm80::forward against the fp64
// oracle on fresh random inputs with NaN-poisoned outputs, for every head-dim pair and dtype, each case
// run through all three mask mechanisms (band, mask_mod, block-sparse) on the same inputs.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <cute/tensor.hpp>

#include "api/validate.h"
#include "ccattn/block_sparse.h"
#include "ccattn/cuda_tiles.h"
#include "core/band.h"
#include "core/bound_bands.h"
#include "core/schedule.h"
#include "cuda/cuda_status.h"
#include "cuda/gpu_test_util.h"
#include "cuda/non_finite.h"
#include "sm80/copy.h"
#include "sm80/fragment.h"
#include "sm80/kernel_traits.h"
#include "sm80/kv_schedule.h"
#include "gpu/register_mask.h"
#include "sm80/sm80.h"

namespace ccattn {
namespace {

using namespace test;

// ---------------------------------------------------------------------------------------------
// Host checks

// Every score of a tile has exactly one owner; a thread's row view holds one tile row per view row;
// the threads sharing a row form one quad (lanes 4g .. 4g+3: the softmax shuffles); the O accumulator
// has the same rows; and P, re-read as the A operand of P V, holds exactly the entries the MMA expects.
template <class T>
void check_fragment_views() {
    using namespace cute;
    constexpr int kM = T::kTileM, kN = T::kTileN;
    typename T::TiledMma mma;
    auto ident_s = make_identity_tensor(Shape<Int<kM>, Int<kN>>{});
    auto ident_o = make_identity_tensor(Shape<Int<kM>, Int<T::kDimV>>{});
    std::vector<int> owner(kM * kN, -1), quad_of_row(kM, -1);
    for (int tid = 0; tid < T::kThreads; ++tid) {
        auto thr = mma.get_thread_slice(tid);
        auto s = sm80::rowcol(thr.partition_C(ident_s));
        auto o = sm80::rowcol(thr.partition_C(ident_o));
        ASSERT_EQ(int(size<0>(s)), T::kRowsPerThread);
        ASSERT_EQ(int(size<0>(o)), T::kRowsPerThread);
        for (int r = 0; r < size<0>(s); ++r) {
            const int row = get<0>(s(r, 0));
            ASSERT_EQ(get<0>(o(r, 0)), row) << "thread " << tid;
            if (quad_of_row[row] < 0) quad_of_row[row] = tid / 4;
            EXPECT_EQ(quad_of_row[row], tid / 4) << "row " << row;
            for (int c = 0; c < size<1>(s); ++c) {
                ASSERT_EQ(get<0>(s(r, c)), row);
                const int col = get<1>(s(r, c));
                ASSERT_EQ(owner[row * kN + col], -1) << "(" << row << ", " << col << ") owned twice";
                owner[row * kN + col] = tid;
            }
            for (int c = 0; c < size<1>(o); ++c) ASSERT_EQ(get<0>(o(r, c)), row);
        }
        auto acc = thr.partition_C(ident_s);
        auto p_as_a = cute::make_tensor(acc.data(), sm80::acc_as_a_layout(acc.layout()));
        auto a = thr.partition_A(ident_s);  // what the P V MMA reads as A: (row, key)
        ASSERT_EQ(int(size(a)), int(size(p_as_a)));
        for (int i = 0; i < size(a); ++i) {
            ASSERT_EQ(get<0>(a(i)), get<0>(p_as_a(i))) << "thread " << tid << " value " << i;
            ASSERT_EQ(get<1>(a(i)), get<1>(p_as_a(i))) << "thread " << tid << " value " << i;
        }
    }
    EXPECT_EQ(std::count(owner.begin(), owner.end(), -1), 0);
}

TEST(Sm80ForwardHost, FragmentViews) {
    check_fragment_views<sm80::ForwardTraits<64, 64, DType::bf16>>();
    check_fragment_views<sm80::ForwardTraits<128, 128, DType::fp16>>();
    check_fragment_views<sm80::ForwardTraits<192, 128, DType::bf16>>();
    check_fragment_views<sm80::ForwardTraits<256, 256, DType::fp16>>();
}

// A swizzled tile is a bijection onto [0, R*D) whose 8-element (16-byte) chunks stay contiguous and
// aligned (cp.async and the row stores move them whole), and its transposed view names the same bytes.
template <int kRows, int kDim>
void check_smem_tile() {
    typename sm80::SmemTile<kRows, kDim> layout;
    typename sm80::SmemTileTransposed<kRows, kDim> transposed;
    std::vector<int> seen(kRows * kDim, 0);
    for (int r = 0; r < kRows; ++r)
        for (int c = 0; c < kDim; ++c) {
            const int off = int(layout(r, c));
            ASSERT_GE(off, 0);
            ASSERT_LT(off, kRows * kDim);
            ++seen[off];
            ASSERT_EQ(int(transposed(c, r)), off);
            if (c % 8 == 0) ASSERT_EQ(off % 8, 0) << r << ", " << c;
            else ASSERT_EQ(off, int(layout(r, c - c % 8)) + c % 8) << r << ", " << c;
        }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), kRows * kDim);
}

TEST(Sm80ForwardHost, SharedMemoryLayouts) {
    check_smem_tile<128, 64>();
    check_smem_tile<128, 128>();
    check_smem_tile<64, 192>();
    check_smem_tile<32, 256>();
    check_smem_tile<64, 256>();
}

// The loads and stores cover every 16-byte chunk of a tile exactly once.
template <int kThreads, int kRows, int kDim>
void check_row_chunks() {
    using C = sm80::RowChunks<kThreads, kRows, kDim, cutlass::bfloat16_t>;
    std::vector<int> seen(kRows * kDim / 8, 0);
    for (int tid = 0; tid < kThreads; ++tid)
        for (int pass = 0; pass < C::kPasses; ++pass)
            for (int step = 0; step < C::kSteps; ++step) {
                const int r = C::row(tid, pass), c = C::col(tid, step);
                ASSERT_LT(r, kRows);
                ASSERT_LT(c, kDim);
                ASSERT_EQ(c % 8, 0);
                ++seen[(r * kDim + c) / 8];
            }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), kRows * kDim / 8);
}

TEST(Sm80ForwardHost, CopyCoversEveryChunkOnce) {
    check_row_chunks<256, 128, 64>();
    check_row_chunks<256, 64, 192>();
    check_row_chunks<128, 64, 256>();
    check_row_chunks<128, 32, 256>();
}

// The dense schedule visits, from the last tile down, exactly the tiles that hold a visible pair of
// the q-tile's (GQA-packed) rows or lie between such tiles, and leaves unmasked only tiles where
// every pair is visible.
TEST(Sm80ForwardHost, KvScheduleMatchesBruteForce) {
    std::mt19937_64 rng(7);
    auto pick = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
    for (int iter = 0; iter < 150; ++iter) {
        core::BandSpec spec;
        spec.causal = pick(0, 3) != 0;
        spec.compress_factor = pick(0, 2) == 0 ? 1 : pick(1, 40);
        spec.has_diag_offset = pick(0, 1) != 0;
        spec.diag_offset = pick(-200, 200);
        spec.window_left = pick(0, 2) == 0 ? pick(0, 50) : core::kNoWindow;
        const std::int64_t sq = pick(1, 200), sk = pick(0, 250), group = pick(1, 6);
        const int tile_m = int(16 << pick(1, 3)), tile_n = int(16 << pick(0, 3));
        const core::CompressedBand band = spec.for_sequence(sq, sk);
        for (std::int64_t mt = 0; mt < core::num_tiles(sq * group, tile_m); ++mt) {
            const core::RowSpan span = core::query_span(mt, tile_m, group, sq);
            const auto sched = sm80::KvSchedule::dense(core::kv_tile_range(band, span, tile_n), sk, tile_n);
            std::vector<int> visited;
            for (int k = 0; k < sched.count(); ++k) visited.push_back(sched.tile(k));
            ASSERT_TRUE(std::is_sorted(visited.rbegin(), visited.rend()));
            for (int t : visited) ASSERT_TRUE(0 <= t && t < core::num_tiles(sk, tile_n)) << "tile " << t;
            for (std::int64_t t = 0; t < core::num_tiles(sk, tile_n); ++t) {
                bool any = false, all = true;
                for (std::int64_t r = mt * tile_m; r < std::min((mt + 1) * tile_m, sq * group); ++r)
                    for (std::int64_t j = t * tile_n; j < (t + 1) * tile_n; ++j) {
                        const bool v = j < sk && core::visible(band, r / group, j);
                        any = any || v;
                        all = all && v;
                    }
                const auto it = std::find(visited.begin(), visited.end(), int(t));
                if (any) ASSERT_NE(it, visited.end()) << "tile " << t << " with visible pairs is skipped";
                if (it != visited.end() && !sched.masked(int(it - visited.begin()), int(t)))
                    ASSERT_TRUE(all) << "tile " << t << " runs unmasked but holds masked pairs";
            }
        }
    }
}

TEST(Sm80ForwardHost, KvScheduleBlockSparse) {
    // (b, h, q-tile) = (1, 2, 3) of lists [2, 3, 4(, 4)]; tile_n 64, 200 keys: tile 3 is ragged.
    std::vector<std::int32_t> count(2 * 3 * 4, 0), index(2 * 3 * 4 * 4, -1);
    const int cell = (1 * 3 + 2) * 4 + 3;
    core::AttnParams p;
    std::vector<std::int32_t> pcount = count, pindex = index;
    count[cell] = 2;
    index[cell * 4 + 0] = 0;
    index[cell * 4 + 1] = 3;
    pcount[cell] = 1;
    pindex[cell * 4 + 0] = 2;
    for (auto [lists, c, x] : {std::tuple{&p.sparse_full, &count, &index}, std::tuple{&p.sparse_partial, &pcount, &pindex}}) {
        lists->count = c->data();
        lists->index = x->data();
        lists->count_batch_stride = 12;
        lists->count_head_stride = 4;
        lists->count_tile_stride = 1;
        lists->index_batch_stride = 48;
        lists->index_head_stride = 16;
        lists->index_tile_stride = 4;
    }
    const auto sched = sm80::KvSchedule::sparse(p, 1, 2, 3, 200, 64);
    ASSERT_EQ(sched.count(), 3);
    EXPECT_EQ(sched.tile(0), 2);  // partial tiles first
    EXPECT_TRUE(sched.masked(0, 2));
    EXPECT_EQ(sched.tile(1), 0);
    EXPECT_FALSE(sched.masked(1, 0));
    EXPECT_EQ(sched.tile(2), 3);
    EXPECT_TRUE(sched.masked(2, 3)) << "a full tile past the last key still needs the key bound";
}

TEST(Sm80ForwardHost, ElementBandEqualsBand) {
    std::mt19937_64 rng(11);
    auto pick = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
    for (int iter = 0; iter < 300; ++iter) {
        core::BandSpec spec;
        spec.causal = pick(0, 3) != 0;
        spec.compress_factor = pick(1, 70);
        spec.has_diag_offset = pick(0, 1) != 0;
        spec.diag_offset = pick(-300, 300);
        spec.window_left = pick(0, 1) ? pick(0, 40) : core::kNoWindow;
        const std::int64_t sq = pick(1, 200), sk = pick(0, 200);
        const core::CompressedBand band = spec.for_sequence(sq, sk);
        const gpu::ElementBand element(band);
        for (std::int64_t i = 0; i < sq; ++i)
            for (std::int64_t j = -3; j < sk + 3; ++j)
                ASSERT_EQ(element(i, j), core::visible(band, i, j)) << "i " << i << " j " << j;
    }
}

// ---------------------------------------------------------------------------------------------
// GPU checks


// sm80::forward itself, whatever kernel family the backend dispatch would pick on this device.
Status sm80_forward(const AttnTensors& t, const Mask& mask, std::optional<float> scale = {}, bool with_lse = true) {
    ForwardArgs a = forward_args(t, mask, Device::cuda);
    a.scale = scale;
    if (!with_lse) a.lse = Tensor{};
    api::HostSeqlens host;
    if (t.cu_q.rank) {
        host.q = reinterpret_cast<const std::int32_t*>(t.cu_q.host.data());
        host.k = reinterpret_cast<const std::int32_t*>(t.cu_k.host.data());
    }
    core::AttnParams p;
    Status s = api::fill_forward_params(a, host, p);
    if (!s.ok()) return s;
    if (!(s = sm80::forward(p)).ok()) return s;
    return cuda::cuda_status(cudaDeviceSynchronize(), "sm80 forward");
}

enum class Mechanism { band, mask_mod, block_sparse };
const char* mechanism_name(Mechanism m) {
    return m == Mechanism::band ? "band" : m == Mechanism::mask_mod ? "mask_mod" : "block_sparse";
}

sm80::ForwardTile kernel_tile(const Problem& pr) {
    sm80::ForwardTile tile;
    if (!sm80::forward_tile_for(pr.dim_qk, pr.dim_v, tile)) throw std::runtime_error("no forward tile");
    return tile;
}

// The mask the GPU runs for mechanism m: the band's fields (also the per-element predicate of mask_mod)
// or block-sparse lists built from the band with the kernel's tile sizes.
Mask mechanism_mask(const Mask& band, Mechanism m, const Problem& pr, DeviceBlockSparse& lists) {
    if (m == Mechanism::block_sparse) {
        const sm80::ForwardTile tile = kernel_tile(pr);
        return block_sparse_mask(band, pr, tile.tile_m, tile.tile_n, lists);
    }
    Mask g = band;
    if (m == Mechanism::mask_mod) g.kind = MaskKind::mask_mod;
    return g;
}

// Two lse tensors of the same rows: -inf at the same places, else within tol * max(1, |lse|).
::testing::AssertionResult lse_agree(const std::vector<double>& a, const std::vector<double>& b, double tol = 2e-5) {
    for (std::size_t e = 0; e < a.size(); ++e) {
        const bool ok = std::isinf(b[e]) ? a[e] == b[e] : std::fabs(a[e] - b[e]) <= tol * std::max(1.0, std::fabs(b[e]));
        if (!ok) return ::testing::AssertionFailure() << "lse entry " << e << ": " << a[e] << " vs " << b[e];
    }
    return ::testing::AssertionSuccess();
}

// Runs the sm80 forward on one set of random inputs through each mechanism encoding `band`, and checks
// every result against the fp64 oracle of the band (out, lse, nothing written outside the views), and
// the three lse against each other.
void check_forward(const Problem& pr, const Mask& band, std::optional<float> scale = {}) {
    AttnTensors t = make_forward_tensors(pr);
    const cpu::Reference ref = reference(t, band, false, scale);
    std::vector<double> lse_band;
    for (Mechanism m : {Mechanism::band, Mechanism::mask_mod, Mechanism::block_sparse}) {
        SCOPED_TRACE(mechanism_name(m));
        t.out.poison();
        t.lse.poison();
        t.out.upload();
        t.lse.upload();
        DeviceBlockSparse lists;
        ASSERT_TRUE(run_ok(sm80_forward(t, mechanism_mask(band, m, pr, lists), scale)));
        t.out.download();
        t.lse.download();
        EXPECT_TRUE(close_to_dense(t.out, ref.out, output_tolerance(pr.dtype), "out"));
        EXPECT_TRUE(lse_close(t.lse, ref.lse, "lse"));
        EXPECT_TRUE(untouched_outside_view(t.out, "out"));
        EXPECT_TRUE(untouched_outside_view(t.lse, "lse"));
        const std::vector<double> lse = dense_lse(t.lse);
        if (m == Mechanism::band) lse_band = lse;
        else EXPECT_TRUE(lse_agree(lse, lse_band));
    }
}

class Sm80Forward : public ::testing::TestWithParam<Config> {
  protected:
    void SetUp() override {
        if (!device_is_sm80_or_newer()) GTEST_SKIP() << "needs a CUDA device of compute capability 8.0 or newer";
    }
    Problem problem(std::int64_t sq, std::int64_t sk, int hq = 2, int hkv = 1, int batch = 1) const {
        return config_problem(GetParam(), sq, sk, hq, hkv, batch, 0);
    }
};

TEST_P(Sm80Forward, CausalSquare) { check_forward(problem(203, 203, 2, 2, 2), Mask::band(true)); }

TEST_P(Sm80Forward, CausalBottomRight) {
    check_forward(problem(113, 301), Mask::band(true));  // delta = Sk - Sq = 188
    check_forward(problem(301, 113), Mask::band(true));  // delta = -188: the first 188 rows are empty
}

TEST_P(Sm80Forward, Compressed4) { check_forward(problem(1000, 250, 4, 2), Mask::band(true, 4)); }

TEST_P(Sm80Forward, NsaBlocks) {
    // NSA compression blocks of 32 with stride 16: j*16 + 31 <= i.
    check_forward(problem(1000, 63, 2, 1), Mask::band(true, 16, -31));
}

TEST_P(Sm80Forward, Compressed64OddLengths) { check_forward(problem(4099, 65, 4, 1), Mask::band(true, 64)); }

// The largest cf, window and offsets validation accepts, through every mechanism (the per-element
// band multiplies keys by cf and by window + 1).
TEST_P(Sm80Forward, BandsAtTheValidationBounds) {
    for (const BoundBand& b : bands_at_validation_bounds()) {
        SCOPED_TRACE(::testing::Message() << "cf " << b.cf << " delta " << b.delta << " causal " << b.causal
                                          << " window " << b.window.value_or(-1));
        check_forward(problem(203, 113), Mask::band(b.causal, b.cf, b.delta, b.window));
    }
}

// Non-finite inputs (docs/decisions.md 13) through every mechanism: a NaN or +inf score, or only
// -inf scores, make the row NaN; rows the mask leaves empty stay empty; a -inf score weighs 0.
TEST_P(Sm80Forward, NonFiniteInputs) {
    const Config& c = GetParam();
    const Problem pr = non_finite_problem(c.dim_qk, c.dim_v, c.dtype);
    const Mask band = non_finite_band();
    for (Planted what : {Planted::nan_and_inf, Planted::only_minus_inf, Planted::minus_inf_scores})
        for (Mechanism m : {Mechanism::band, Mechanism::mask_mod, Mechanism::block_sparse}) {
            SCOPED_TRACE(std::string(planted_name(what)) + ", " + mechanism_name(m));
            AttnTensors t = make_forward_tensors(pr);
            plant(t, what);
            const cpu::Reference ref = reference(t, band);
            DeviceBlockSparse lists;
            ASSERT_TRUE(run_ok(sm80_forward(t, mechanism_mask(band, m, pr, lists))));
            t.out.download();
            t.lse.download();
            EXPECT_TRUE(follows_non_finite_rule(t.out, t.lse, ref, output_tolerance(pr.dtype)));
        }
}

TEST_P(Sm80Forward, PositiveDelta) { check_forward(problem(203, 113), Mask::band(true, 4, 50)); }

TEST_P(Sm80Forward, Windows) {
    check_forward(problem(300, 300), Mask::band(true, 1, {}, 37));
    check_forward(problem(500, 130, 2, 2), Mask::band(true, 4, 3, 5));
    check_forward(problem(203, 113), Mask::band(false, 2, {}, 20));  // left edge only
}

TEST_P(Sm80Forward, NonCausal) { check_forward(problem(113, 203, 3, 1), Mask::none()); }

TEST_P(Sm80Forward, EmptyRowsAndTiles) {
    check_forward(problem(700, 700), Mask::band(true, 1, -500));  // whole q-tiles of empty rows
    check_forward(problem(300, 80), Mask::band(true, 4, -1000));  // every row empty
    check_forward(problem(37, 0), Mask::none());                  // no keys at all
}

TEST_P(Sm80Forward, Decode) {
    check_forward(problem(1, 1000, 8, 1), Mask::band(true));  // delta = 999
    check_forward(problem(1, 250, 16, 2), Mask::band(true, 4, 999));
}

TEST_P(Sm80Forward, Varlen) {
    Problem pr = problem(0, 0, 4, 2);
    // Sequences: empty q; no keys (all rows empty); empty q again; two ordinary ones.
    pr.cu_seqlens_q = {0, 0, 113, 113, 400, 1203};
    pr.cu_seqlens_k = {0, 50, 50, 60, 300, 501};
    check_forward(pr, Mask::band(true, 4));
    check_forward(pr, Mask::band(true));  // per-sequence bottom-right delta
}

TEST_P(Sm80Forward, GqaGroups) {
    for (int group : {1, 2, 3, 4, 6, 8, 16, 32, 64}) {
        SCOPED_TRACE("group " + std::to_string(group));
        check_forward(problem(150, 75, 2 * group, 2), Mask::band(true, 2));
    }
}

TEST_P(Sm80Forward, StridedTensors) {
    Problem pr = problem(203, 51, 4, 2, 2);
    pr.pad = 8;
    check_forward(pr, Mask::band(true, 4));
    Problem vl = problem(0, 0, 2, 1);
    vl.cu_seqlens_q = {0, 77, 300};
    vl.cu_seqlens_k = {0, 20, 100};
    vl.pad = 24;
    check_forward(vl, Mask::band(true, 4, -3, 9));
}

TEST_P(Sm80Forward, Scales) {
    check_forward(problem(130, 70), Mask::band(true, 2), 0.05f);
    check_forward(problem(130, 70), Mask::band(true, 2), -0.2f);  // the row max is then the smallest score
}

TEST_P(Sm80Forward, WithoutLse) {
    const Problem pr = problem(150, 150, 2, 2);
    AttnTensors t = make_forward_tensors(pr);
    ASSERT_TRUE(run_ok(sm80_forward(t, Mask::band(true), {}, false)));
    t.out.download();
    t.lse.download();
    const cpu::Reference ref = reference(t, Mask::band(true));
    EXPECT_TRUE(close_to_dense(t.out, ref.out, output_tolerance(pr.dtype), "out"));
    EXPECT_TRUE(std::all_of(t.lse.host.begin(), t.lse.host.end(), [](unsigned char c) { return c == 0xFF; }));
}

TEST_P(Sm80Forward, AgreesWithCpuBackend) {
    Problem pr = problem(0, 0, 6, 2);
    pr.cu_seqlens_q = {0, 250, 261, 600};
    pr.cu_seqlens_k = {0, 64, 70, 160};
    const Mask band = Mask::band(true, 4, -3, 20);
    AttnTensors t = make_forward_tensors(pr);
    ASSERT_TRUE(run_ok(sm80_forward(t, band)));
    t.out.download();
    t.lse.download();
    const CpuForward cpu = cpu_forward(t, band);
    Tolerance tol = output_tolerance(pr.dtype);
    tol.elem *= 2;
    tol.l2 *= 2;
    EXPECT_TRUE(close_to_dense(t.out, dense(cpu.out), tol, "out vs cpu"));
    EXPECT_TRUE(lse_close(t.lse, dense_lse(cpu.lse), "lse vs cpu"));
}

// Small shapes that still cover unmasked and masked tiles, GQA packing with a group that does not
// divide the tile, varlen and block-sparse: the subset scripts/gpu_tests.sh runs under
// compute-sanitizer.
TEST_P(Sm80Forward, SanitizerSmall) {
    Problem pr = problem(0, 0, 6, 2);
    pr.cu_seqlens_q = {0, 70, 70, 267};
    pr.cu_seqlens_k = {0, 33, 40, 140};
    check_forward(pr, Mask::band(true, 2, -1, 40));
}

INSTANTIATE_TEST_SUITE_P(Configs, Sm80Forward, ::testing::ValuesIn(all_configs()), config_name);

// ---------------------------------------------------------------------------------------------
// Errors: rejected before any kernel runs, nothing written.

TEST(Sm80ForwardErrors, UnalignedOrUnsupportedLayouts) {
    CCATTN_REQUIRE_SM80();
    Problem pr;
    pr.seqlen_q = pr.seqlen_k = 64;
    pr.heads_q = pr.heads_kv = 2;
    AttnTensors t = make_forward_tensors(pr);

    ForwardArgs a = forward_args(t, Mask::band(true), Device::cuda);
    a.q.data = static_cast<char*>(a.q.data) + 2;  // element-aligned, not 16-byte aligned
    Status s = forward(a);
    EXPECT_EQ(s.code, Code::invalid_argument) << s.to_string();
    EXPECT_EQ(s.argument, "q");

    Problem odd = pr;
    odd.pad = 4;  // row / head strides not multiples of 8 elements
    AttnTensors u = make_forward_tensors(odd);
    s = forward(forward_args(u, Mask::band(true), Device::cuda));
    EXPECT_EQ(s.code, Code::invalid_argument) << s.to_string();
    EXPECT_EQ(s.argument, "q");

    Problem dims = pr;
    dims.dim_qk = dims.dim_v = 96;
    AttnTensors w = make_forward_tensors(dims);
    s = forward(forward_args(w, Mask::band(true), Device::cuda));
    EXPECT_EQ(s.code, Code::unsupported) << s.to_string();
    EXPECT_EQ(s.argument, "q");

    for (AttnTensors* x : {&t, &u, &w}) {
        x->out.download();
        x->lse.download();
        EXPECT_TRUE(all_poisoned(x->out));
        EXPECT_TRUE(all_poisoned(x->lse));
    }
}

TEST(Sm80ForwardErrors, BlockSparseTilesMustMatchTheKernel) {
    CCATTN_REQUIRE_SM80();
    Problem pr;
    pr.seqlen_q = pr.seqlen_k = 300;
    AttnTensors t = make_forward_tensors(pr);
    const sm80::ForwardTile tile = kernel_tile(pr);
    DeviceBlockSparse lists;
    const Mask m = block_sparse_mask(Mask::band(true), pr, tile.tile_m / 2, tile.tile_n, lists);
    Status s = sm80_forward(t, m);
    EXPECT_EQ(s.code, Code::invalid_argument) << s.to_string();
    EXPECT_EQ(s.argument, "mask.block_sparse.tile_m");
    t.out.download();
    EXPECT_TRUE(all_poisoned(t.out));

    std::int64_t tm = 0, tn = 0;
    EXPECT_EQ(cuda_block_sparse_tiles(96, 96, DType::bf16, tm, tn).code, Code::unsupported);
}

// Varlen with check_cu_seqlens = false (no host copy of cu_seqlens): the forward and backward are
// captured in a CUDA graph, replayed, and give what the checked calls give.
TEST(CudaDispatch, UncheckedCuSeqlensInACudaGraph) {
    CCATTN_REQUIRE_SM80();
    Problem pr;
    pr.cu_seqlens_q = {0, 0, 113, 700, 701};
    pr.cu_seqlens_k = {0, 50, 300, 300, 331};
    pr.heads_q = 4;
    pr.heads_kv = 2;
    const Mask band = Mask::band(true, 4);
    AttnTensors t = make_forward_tensors(pr);
    add_backward_tensors(pr, t);
    ASSERT_TRUE(run_ok(forward(forward_args(t, band, Device::cuda))));
    ASSERT_TRUE(run_ok(backward(backward_args(t, band, Device::cuda))));
    cuda_check(cudaDeviceSynchronize(), "checked calls");
    for (TestTensor* x : {&t.out, &t.lse, &t.dq, &t.dk, &t.dv}) x->download();
    const std::vector<unsigned char> out = t.out.host, lse = t.lse.host;
    const std::vector<double> dq = dense(t.dq), dk = dense(t.dk), dv = dense(t.dv);

    for (TestTensor* x : {&t.out, &t.lse, &t.dq, &t.dk, &t.dv}) {
        x->poison();
        x->upload();
    }
    cudaStream_t stream = nullptr;
    cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
    ForwardArgs fa = forward_args(t, band, Device::cuda);
    BackwardArgs ba = backward_args(t, band, Device::cuda);
    for (VarlenChecks* v : {&fa.varlen, &ba.varlen}) {
        v->check_cu_seqlens = false;
        v->max_seqlen_q = 587;
        v->max_seqlen_k = 250;
    }
    fa.stream = ba.stream = stream;
    cudaGraph_t graph = nullptr;
    cuda_check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "begin capture");
    const Status fs = forward(fa);
    const Status bs = fs.ok() ? backward(ba) : fs;
    cuda_check(cudaStreamEndCapture(stream, &graph), "end capture");
    ASSERT_TRUE(run_ok(fs));
    ASSERT_TRUE(run_ok(bs));
    cudaGraphExec_t exec = nullptr;
    cuda_check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
    for (int replay = 0; replay < 2; ++replay) cuda_check(cudaGraphLaunch(exec, stream), "launch");
    cuda_check(cudaStreamSynchronize(stream), "replay");
    for (TestTensor* x : {&t.out, &t.lse, &t.dq, &t.dk, &t.dv}) x->download();
    EXPECT_TRUE(t.out.host == out) << "out differs from the checked forward";
    EXPECT_TRUE(t.lse.host == lse) << "lse differs from the checked forward";
    const Tolerance tol = output_tolerance(pr.dtype);  // dQ sums with atomics: last bits may differ
    EXPECT_TRUE(close_to_dense(t.dq, dq, tol, "dq"));
    EXPECT_TRUE(close_to_dense(t.dk, dk, tol, "dk"));
    EXPECT_TRUE(close_to_dense(t.dv, dv, tol, "dv"));
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
}

// Device block-sparse lists are checked on request (BlockSparseMask::check_device_lists): a kv tile
// listed as full and as partial for one q-tile is then rejected by name before anything runs.
TEST(CudaDispatch, DeviceBlockSparseListsCheckedOnRequest) {
    CCATTN_REQUIRE_SM80();
    Problem pr;
    pr.seqlen_q = pr.seqlen_k = 300;
    std::int64_t tm = 0, tn = 0;
    ASSERT_TRUE(run_ok(cuda_block_sparse_tiles(pr.dim_qk, pr.dim_v, pr.dtype, tm, tn)));
    AttnTensors t = make_forward_tensors(pr);
    DeviceBlockSparse lists;
    Mask m = block_sparse_mask(Mask::band(true), pr, tm, tn, lists);
    m.block_sparse.check_device_lists = true;
    ASSERT_TRUE(run_ok(forward(forward_args(t, m, Device::cuda))));  // the builder's lists pass

    const std::int64_t mt = lists.full_count.shape[2] - 1;  // the last q-tile: full tiles and the diagonal
    const std::int64_t count_at[3] = {0, 0, mt}, slot0[4] = {0, 0, mt, 0};
    ASSERT_GE(lists.full_count.get(lists.full_count.offset(count_at)), 1);
    ASSERT_GE(lists.partial_count.get(lists.partial_count.offset(count_at)), 1);
    lists.partial_index.set(lists.partial_index.offset(slot0), lists.full_index.get(lists.full_index.offset(slot0)));
    lists.partial_index.upload();
    t.out.poison();
    t.out.upload();
    const Status s = forward(forward_args(t, m, Device::cuda));
    EXPECT_EQ(s.code, Code::invalid_argument) << s.to_string();
    EXPECT_EQ(s.argument, "mask.block_sparse.partial_index");
    t.out.download();
    EXPECT_TRUE(all_poisoned(t.out));
    m.block_sparse.check_device_lists = false;  // unchecked: the caller's precondition (decision 3)
    EXPECT_TRUE(run_ok(forward(forward_args(t, m, Device::cuda))));
}

// The public tile sizes are those of the kernel the dispatch runs on this device (sm80, or sm90 on
// Hopper): lists built with them run through ccattn::forward and agree with the native band.
TEST(CudaDispatch, BlockSparseWithPublicTiles) {
    CCATTN_REQUIRE_SM80();
    Problem pr;
    pr.seqlen_q = 777;
    pr.seqlen_k = 300;
    pr.heads_q = 4;
    pr.heads_kv = 2;
    pr.dim_qk = pr.dim_v = 128;
    std::int64_t tm = 0, tn = 0;
    ASSERT_TRUE(run_ok(cuda_block_sparse_tiles(pr.dim_qk, pr.dim_v, pr.dtype, tm, tn)));
    const Mask band = Mask::band(true, 4, -3);
    AttnTensors t = make_forward_tensors(pr);
    DeviceBlockSparse lists;
    ASSERT_TRUE(run_ok(forward(forward_args(t, block_sparse_mask(band, pr, tm, tn, lists), Device::cuda))));
    t.out.download();
    t.lse.download();
    const cpu::Reference ref = reference(t, band);
    EXPECT_TRUE(close_to_dense(t.out, ref.out, output_tolerance(pr.dtype), "out"));
    EXPECT_TRUE(lse_close(t.lse, ref.lse, "lse"));
}

// ---------------------------------------------------------------------------------------------
// 64-bit offsets: q, out and the interleaved k/v buffer each hold more than 2^31 elements; a few rows
// (the last ones at offsets beyond 2^31) are checked against an fp64 reference computed here.

__global__ void fill_uniform_bf16(__nv_bfloat16* x, std::int64_t n, std::uint64_t seed) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
        std::uint64_t h = seed + std::uint64_t(i) * 0x9E3779B97F4A7C15ull;  // splitmix64
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
        h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
        h ^= h >> 31;
        x[i] = __float2bfloat16_rn(float(h >> 40) * (2.f / 16777216.f) - 1.f);
    }
}

std::vector<double> download_bf16(const void* device, std::int64_t offset, std::int64_t count) {
    std::vector<std::uint16_t> h(static_cast<std::size_t>(count));
    cuda_check(cudaMemcpy(h.data(), static_cast<const std::uint16_t*>(device) + offset, std::size_t(count) * 2,
                          cudaMemcpyDeviceToHost),
               "download rows");
    std::vector<double> d(h.size());
    for (std::size_t e = 0; e < h.size(); ++e) d[e] = core::bf16_to_float(h[e]);
    return d;
}

TEST(Sm80ForwardLarge, OffsetsBeyond32Bits) {
    CCATTN_REQUIRE_SM80();
    constexpr std::int64_t S = 1100000;
    constexpr int Hq = 16, Hkv = 8, D = 128, W = 63;
    static_assert((S - 1) * Hq * D > (std::int64_t(1) << 31) && (S - 1) * 2 * Hkv * D > (std::int64_t(1) << 31));
    std::size_t free_bytes = 0, total_bytes = 0;
    cuda_check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    if (free_bytes < (std::size_t(16) << 30)) GTEST_SKIP() << "needs 16 GiB of free device memory";

    const std::int64_t q_elems = S * Hq * D, kv_elems = S * 2 * Hkv * D;
    DeviceBuffer q(std::size_t(q_elems) * 2), kv(std::size_t(kv_elems) * 2), out(std::size_t(q_elems) * 2),
        lse(std::size_t(Hq * S) * 4);
    fill_uniform_bf16<<<4096, 256>>>(static_cast<__nv_bfloat16*>(q.data()), q_elems, 1);
    fill_uniform_bf16<<<4096, 256>>>(static_cast<__nv_bfloat16*>(kv.data()), kv_elems, 2);
    cuda_check(cudaMemset(out.data(), 0xFF, out.bytes()), "poison out");
    cuda_check(cudaMemset(lse.data(), 0xFF, lse.bytes()), "poison lse");

    ForwardArgs a;
    a.q = Tensor::contiguous(q.data(), DType::bf16, {1, S, Hq, D}, Device::cuda);
    a.out = Tensor::contiguous(out.data(), DType::bf16, {1, S, Hq, D}, Device::cuda);
    a.lse = Tensor::contiguous(lse.data(), DType::fp32, {1, Hq, S}, Device::cuda);
    // k and v interleaved per row: [S, 2, Hkv, D], so each has row stride 2 * Hkv * D.
    a.k = Tensor::contiguous(kv.data(), DType::bf16, {1, S, Hkv, D}, Device::cuda);
    a.k.stride[0] = S * 2 * Hkv * D;
    a.k.stride[1] = 2 * Hkv * D;
    a.v = a.k;
    a.v.data = static_cast<std::uint16_t*>(kv.data()) + Hkv * D;
    a.mask = Mask::band(true, 1, {}, W);
    core::AttnParams p;
    ASSERT_TRUE(run_ok(api::fill_forward_params(a, {}, p)));
    ASSERT_TRUE(run_ok(sm80::forward(p)));
    cuda_check(cudaDeviceSynchronize(), "forward");

    const double scale = 1.0 / std::sqrt(double(D));
    for (std::int64_t i : {std::int64_t(0), std::int64_t(1), std::int64_t(4099), S / 2 + 3, S - 2, S - 1}) {
        const std::int64_t lo = std::max<std::int64_t>(0, i - W), hi = i + 1;
        const std::vector<double> qi = download_bf16(q.data(), i * Hq * D, Hq * D);
        const std::vector<double> oi = download_bf16(out.data(), i * Hq * D, Hq * D);
        const std::vector<double> keys = download_bf16(kv.data(), lo * 2 * Hkv * D, (hi - lo) * 2 * Hkv * D);
        for (int h = 0; h < Hq; ++h) {
            const int hk = h / (Hq / Hkv);
            std::vector<double> s;
            double mx = -INFINITY;
            for (std::int64_t j = lo; j < hi; ++j) {
                const double* kj = &keys[std::size_t(((j - lo) * 2 + 0) * Hkv * D + hk * D)];
                double dot = 0;
                for (int e = 0; e < D; ++e) dot += qi[std::size_t(h * D + e)] * kj[e];
                s.push_back(dot * scale);
                mx = std::max(mx, s.back());
            }
            double sum = 0;
            for (double& x : s) sum += (x = std::exp(x - mx));
            std::vector<double> o(D, 0.0);
            for (std::int64_t j = lo; j < hi; ++j) {
                const double* vj = &keys[std::size_t(((j - lo) * 2 + 1) * Hkv * D + hk * D)];
                for (int e = 0; e < D; ++e) o[std::size_t(e)] += s[std::size_t(j - lo)] / sum * vj[e];
            }
            double rms = 0;
            for (double x : o) rms += x * x;
            rms = std::sqrt(rms / D);
            for (int e = 0; e < D; ++e)
                ASSERT_LE(std::fabs(oi[std::size_t(h * D + e)] - o[std::size_t(e)]), 2.5e-2 * (std::fabs(o[std::size_t(e)]) + rms))
                    << "row " << i << " head " << h << " dim " << e;
            float got_lse = 0;
            cuda_check(cudaMemcpy(&got_lse, static_cast<const float*>(lse.data()) + h * S + i, 4, cudaMemcpyDeviceToHost),
                       "lse");
            EXPECT_NEAR(got_lse, mx + std::log(sum), 2e-4 * std::max(1.0, std::fabs(mx + std::log(sum))))
                << "row " << i << " head " << h;
        }
    }
    EXPECT_TRUE(out.guards_intact());
    EXPECT_TRUE(lse.guards_intact());
}

}  // namespace
}  // namespace ccattn
