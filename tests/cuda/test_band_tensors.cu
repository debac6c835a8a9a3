// Band tensors (Mask::band_tensors) on the GPU: random monotone bands through each forward kernel
// family (sm80, sm90 on Hopper, and the split-KV kernel forced to 3 splits) and the backward (through
// the dispatch: the sm90 kernel on Hopper, with direct dQ where a sequence has at most two kv tiles,
// else sm80) against the fp64 oracle of the same tensors; tensors describing the built-in band
// against the built-in band (forward: the same bits from the same kernel); the device check of
// non-monotone edges (the host check's error, nothing written) and validate = false.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "api/validate.h"
#include "ccattn/ccattn.h"
#include "core/schedule.h"
#include "cuda/band_check.h"
#include "cuda/cuda_status.h"
#include "cuda/gpu_test_util.h"
#include "cuda/grad_check.h"
#include "decode/decode.h"
#include "edge_rows.h"
#include "sm80/backward_chunks.h"
#include "sm80/sm80.h"
#include "sm90/sm90.h"

namespace ccattn {
namespace {

using namespace test;

// Edge rows as int32 or int64 tensors [B, Sq] (or [Tq] with varlen), on the device and on the host
// (the oracle reads the host copies).
struct EdgeTensors {
    TestTensor lo, hi;

    EdgeTensors(const Problem& pr, const EdgeRows& e, DType dtype) {
        const std::vector<std::int64_t> shape =
            pr.varlen() ? std::vector<std::int64_t>{pr.rows_q()} : std::vector<std::int64_t>{pr.batch, pr.seqlen_q};
        lo = make_tensor(dtype, shape);
        hi = make_tensor(dtype, shape);
        for (std::size_t r = 0; r < e.lo.size(); ++r) {
            lo.set(std::int64_t(r), double(e.lo[r]));
            hi.set(std::int64_t(r), double(e.hi[r]));
        }
        lo.upload();
        hi.upload();
    }
    Mask device(bool validate = true) const {
        return Mask::band_tensors(lo.view(Device::cuda), hi.view(Device::cuda), validate);
    }
    Mask host() const { return Mask::band_tensors(lo.view(Device::cpu), hi.view(Device::cpu)); }
};

// Which forward runs: the backend's dispatch, or one kernel family directly.
enum class Kernel { dispatch, sm80, sm90, split, sm90_split };
const char* kernel_name(Kernel k) {
    return k == Kernel::dispatch ? "dispatch"
           : k == Kernel::sm80   ? "sm80"
           : k == Kernel::sm90   ? "sm90"
           : k == Kernel::split  ? "split"
                                 : "sm90_split";
}

std::vector<Kernel> forward_kernels() {
    std::vector<Kernel> k = {Kernel::dispatch, Kernel::sm80, Kernel::split};
    if (device_is_sm90()) {
        k.push_back(Kernel::sm90);
        k.push_back(Kernel::sm90_split);
    }
    return k;
}

Status run_forward(Kernel k, const AttnTensors& t, const Mask& mask) {
    const ForwardArgs a = forward_args(t, mask, Device::cuda);
    Status s;
    if (k == Kernel::dispatch) {
        s = forward(a);
    } else {
        core::AttnParams p;
        if (!(s = api::fill_forward_params(a, host_seqlens(t), p)).ok()) return s;
        const bool split = k == Kernel::split || k == Kernel::sm90_split;
        p.num_splits = split ? 3 : p.num_splits;
        s = k == Kernel::sm80 ? sm80::forward(p)
            : k == Kernel::sm90 ? sm90::forward(p)
                                : decode::forward(p, k == Kernel::sm90_split);
    }
    if (!s.ok()) return s;
    return cuda::cuda_status(cudaDeviceSynchronize(), kernel_name(k));
}

void poison(std::initializer_list<TestTensor*> ts) {
    for (TestTensor* x : ts) {
        x->poison();
        x->upload();
    }
}

// out and lse of kernel k for `mask`, downloaded; checked against the oracle `ref` when given.
void forward_and_check(Kernel k, AttnTensors& t, const Problem& pr, const Mask& mask, const cpu::Reference* ref) {
    poison({&t.out, &t.lse});
    ASSERT_TRUE(run_ok(run_forward(k, t, mask)));
    t.out.download();
    t.lse.download();
    if (ref == nullptr) return;
    EXPECT_TRUE(close_to_dense(t.out, ref->out, output_tolerance(pr.dtype), "out"));
    EXPECT_TRUE(lse_close(t.lse, ref->lse, "lse"));
    EXPECT_TRUE(untouched_outside_view(t.out, "out"));
    EXPECT_TRUE(untouched_outside_view(t.lse, "lse"));
}

// The backward through the dispatch, checked against the oracle's gradients.
void backward_and_check(AttnTensors& t, const Problem& pr, const Mask& mask, const cpu::Reference& ref,
                        const ZeroRows& zero) {
    poison({&t.dq, &t.dk, &t.dv});
    Status s = backward(backward_args(t, mask, Device::cuda));
    if (s.ok()) s = cuda::cuda_status(cudaDeviceSynchronize(), "backward");
    ASSERT_TRUE(run_ok(s));
    for (TestTensor* x : {&t.dq, &t.dk, &t.dv}) x->download();
    const Tolerance tol = grad_tolerance(pr.dtype);
    EXPECT_TRUE(grad_close(t.dq, ref.dq, zero.q, tol, "dq"));
    EXPECT_TRUE(grad_close(t.dk, ref.dk, zero.k, tol, "dk"));
    EXPECT_TRUE(grad_close(t.dv, ref.dv, zero.k, tol, "dv"));
    for (TestTensor* x : {&t.dq, &t.dk, &t.dv}) EXPECT_TRUE(untouched_outside_view(*x, "grad"));
}

Problem varlen_problem(const Config& c, std::vector<std::int32_t> lens_q, std::vector<std::int32_t> lens_k, int hq,
                       int hkv) {
    Problem pr = config_problem(c, 1, 1, hq, hkv, 1, 31);
    pr.cu_seqlens_q = {0};
    pr.cu_seqlens_k = {0};
    for (std::size_t b = 0; b < lens_q.size(); ++b) {
        pr.cu_seqlens_q.push_back(pr.cu_seqlens_q.back() + lens_q[b]);
        pr.cu_seqlens_k.push_back(pr.cu_seqlens_k.back() + lens_k[b]);
    }
    return pr;
}

struct BandCase {
    std::string name;
    Problem problem;
    std::int64_t jump;  // the least of the large steps (tile-sized and beyond)
    DType edge_dtype;
};

// Odd lengths, GQA, a batch, varlen with empty sequences, and steps past the largest tile.
std::vector<BandCase> band_cases(const Config& c) {
    Problem batch2 = config_problem(c, 301, 227, 4, 2, 2, 17);
    batch2.pad = 8;
    return {
        {"odd_gqa_batch2_strided", batch2, 65, DType::int32},
        {"varlen_empty_sequences", varlen_problem(c, {77, 0, 260, 1, 0}, {190, 5, 133, 300, 7}, 4, 1), 65, DType::int64},
        {"steps_past_tiles", config_problem(c, 700, 1500, 3, 1, 1, 19), 257, DType::int32},
    };
}

class BandTensorsGpu : public ::testing::TestWithParam<Config> {
  protected:
    void SetUp() override {
        if (!device_is_sm80_or_newer()) GTEST_SKIP() << "needs a CUDA device of compute capability 8.0 or newer";
    }
};

TEST_P(BandTensorsGpu, RandomBandsMatchTheOracle) {
    for (const BandCase& c : band_cases(GetParam())) {
        SCOPED_TRACE(c.name);
        AttnTensors t = make_forward_tensors(c.problem);
        add_backward_tensors(c.problem, t);
        const EdgeRows rows = random_edge_rows(lengths(c.problem), c.problem.seed, c.jump);
        const EdgeTensors edges(c.problem, rows, c.edge_dtype);
        const cpu::Reference ref = reference(t, edges.host());
        for (Kernel k : forward_kernels()) {
            SCOPED_TRACE(kernel_name(k));
            forward_and_check(k, t, c.problem, edges.device(), &ref);
            if (HasFatalFailure()) return;
        }
        // The backward reads this forward's out and lse, as in training; so does the oracle's D.
        const cpu::Reference grads = reference(t, edges.host(), true);
        backward_and_check(t, c.problem, edges.device(), grads, zero_rows(c.problem, rows));
        if (HasFatalFailure()) return;
    }
}

// Tensors describing the built-in band: the forward gives the built-in band's bits (same kernel, same
// tiles, same per-row limits), the backward the oracle's gradients of the built-in band.
TEST_P(BandTensorsGpu, BuiltinBandAsTensors) {
    struct Band {
        const char* name;
        Mask mask;
    };
    const Band bands[] = {{"causal", Mask::band(true)},
                          {"cf4", Mask::band(true, 4)},
                          {"nsa_cf16", Mask::band(true, 16, -31)},
                          {"window", Mask::band(true, 1, {}, 70)},
                          {"window_only", Mask::band(false, 1, {}, 40)}};
    const Problem problems[] = {config_problem(GetParam(), 203, 203, 2, 2, 2, 23),
                                config_problem(GetParam(), 1000, 250, 4, 1, 1, 29),
                                varlen_problem(GetParam(), {130, 0, 257}, {130, 20, 64}, 2, 1)};
    for (const Problem& pr : problems)
        for (const Band& b : bands) {
            SCOPED_TRACE(std::string(b.name) + " Sq " + std::to_string(pr.rows_q()));
            AttnTensors t = make_forward_tensors(pr);
            add_backward_tensors(pr, t);
            const EdgeRows rows = builtin_edge_rows(lengths(pr), b.mask);
            const EdgeTensors edges(pr, rows, DType::int32);
            for (Kernel k : forward_kernels()) {
                SCOPED_TRACE(kernel_name(k));
                forward_and_check(k, t, pr, b.mask, nullptr);
                if (HasFatalFailure()) return;
                const std::vector<unsigned char> out = t.out.host, lse = t.lse.host;
                forward_and_check(k, t, pr, edges.device(), nullptr);
                if (HasFatalFailure()) return;
                EXPECT_TRUE(t.out.host == out) << "out differs from the built-in band's";
                EXPECT_TRUE(t.lse.host == lse) << "lse differs from the built-in band's";
            }
            const cpu::Reference ref = reference(t, b.mask, true);
            backward_and_check(t, pr, edges.device(), ref, zero_rows(pr, rows));
            if (HasFatalFailure()) return;
        }
}

INSTANTIATE_TEST_SUITE_P(Configs, BandTensorsGpu, ::testing::ValuesIn(all_configs()), config_name);

// ---------------------------------------------------------------------------------------------
// The device check: the host check's error for the same tensors, nothing written.

struct BadEdges {
    Problem pr;
    AttnTensors t;
    EdgeRows rows;
};

BadEdges bad_edges(bool varlen) {
    BadEdges b;
    b.pr = varlen ? varlen_problem({64, 64, DType::bf16}, {5, 9, 4}, {20, 20, 20}, 2, 1)
                  : config_problem({64, 64, DType::bf16}, 9, 20, 2, 1, 2, 37);
    b.t = make_forward_tensors(b.pr);
    add_backward_tensors(b.pr, b.t);
    for (const auto& [sq, sk] : lengths(b.pr))
        for (std::int64_t i = 0; i < sq; ++i) {
            b.rows.lo.push_back(i / 2);
            b.rows.hi.push_back(i + 3);
        }
    return b;
}

// The status of the forward and of the backward on CUDA, with out / grads left untouched.
void expect_rejected(BadEdges& b, DType dtype, const std::string& argument, const std::string& where) {
    const EdgeTensors edges(b.pr, b.rows, dtype);
    const Status host = forward(forward_args(b.t, edges.host(), Device::cpu));
    ASSERT_EQ(host.code, Code::invalid_argument) << host.to_string();
    poison({&b.t.out, &b.t.lse, &b.t.dq, &b.t.dk, &b.t.dv});
    const Status fwd = forward(forward_args(b.t, edges.device(), Device::cuda));
    const Status bwd = backward(backward_args(b.t, edges.device(), Device::cuda));
    for (const Status* s : {&fwd, &bwd}) {
        EXPECT_EQ(s->code, Code::invalid_argument) << s->to_string();
        EXPECT_EQ(s->argument, argument);
        EXPECT_NE(s->message.find(where), std::string::npos) << s->to_string();
        EXPECT_EQ(s->message, host.message);  // the same row, sequence and values as on the host
    }
    for (TestTensor* x : {&b.t.out, &b.t.lse, &b.t.dq, &b.t.dk, &b.t.dv}) {
        x->download();
        EXPECT_TRUE(all_poisoned(*x));
    }
}

TEST(BandTensorsGpuCheck, NonMonotoneEdgesAreNamed) {
    CCATTN_REQUIRE_SM80();
    for (DType dtype : {DType::int32, DType::int64}) {
        {
            BadEdges b = bad_edges(false);
            b.rows.lo[9 + 3] = 0;  // sequence 1, row 3: 0 after 1
            expect_rejected(b, dtype, "mask.lo", "row 3 of sequence 1 has 0 after 1");
        }
        {
            BadEdges b = bad_edges(false);
            b.rows.hi[7] = 1;  // sequence 0, row 7 (and a later lo drop, which is not the first)
            b.rows.lo[9 + 3] = -4;
            expect_rejected(b, dtype, "mask.hi", "row 7 of sequence 0 has 1 after 9");
        }
        {
            BadEdges b = bad_edges(false);
            b.rows.lo[5] = 0;  // lo and hi drop at the same row: lo is named
            b.rows.hi[5] = 0;
            expect_rejected(b, dtype, "mask.lo", "row 5 of sequence 0");
        }
        {
            BadEdges b = bad_edges(true);  // sequence 2 starts at row 14; its row 2 drops below 20 after clamping
            b.rows.hi[14 + 1] = 1000;
            b.rows.hi[14 + 2] = 19;
            expect_rejected(b, dtype, "mask.hi", "row 2 of sequence 2 has 19 after 20");
        }
    }
}

// Values out of range that are monotone once clamped, and edges that drop between varlen sequences,
// are accepted; validate = false skips the check (here: a drop that it would have named).
TEST(BandTensorsGpuCheck, AcceptedEdges) {
    CCATTN_REQUIRE_SM80();
    BadEdges b = bad_edges(true);
    b.rows.lo[0] = -50;
    b.rows.hi[13] = 500;  // last row of sequence 1; sequence 2 starts low again
    const EdgeTensors ok(b.pr, b.rows, DType::int64);
    EXPECT_TRUE(run_ok(forward(forward_args(b.t, ok.device(), Device::cuda))));
    EXPECT_TRUE(run_ok(backward(backward_args(b.t, ok.device(), Device::cuda))));
    b.rows.lo[3] = 0;
    const EdgeTensors bad(b.pr, b.rows, DType::int64);
    EXPECT_EQ(forward(forward_args(b.t, bad.device(), Device::cuda)).code, Code::invalid_argument);
    EXPECT_TRUE(run_ok(forward(forward_args(b.t, bad.device(false), Device::cuda))));
    EXPECT_TRUE(run_ok(cuda::cuda_status(cudaDeviceSynchronize(), "forward")));
}

// The check's count of the backward's q-tile visits equals the host's count over the same tensors
// (core::q_tile_range per kv tile), and for tensors of the built-in band it gives the built-in band's
// q-range chunks.
// Band tensors have no deterministic CUDA backward (decisions.md 17): refused, naming the option,
// nothing written.
TEST(BandTensorsGpuCheck, DeterministicRefused) {
    CCATTN_REQUIRE_SM80();
    BadEdges b = bad_edges(false);  // a valid band until an edge is broken
    const EdgeTensors edges(b.pr, b.rows, DType::int32);
    ASSERT_TRUE(run_ok(forward(forward_args(b.t, edges.device(), Device::cuda))));
    poison({&b.t.dq, &b.t.dk, &b.t.dv});
    BackwardArgs a = backward_args(b.t, edges.device(), Device::cuda);
    a.deterministic = true;
    const Status s = backward(a);
    EXPECT_EQ(s.code, Code::unsupported) << s.to_string();
    EXPECT_EQ(s.argument, "deterministic");
    for (TestTensor* x : {&b.t.dq, &b.t.dk, &b.t.dv}) {
        x->download();
        EXPECT_TRUE(all_poisoned(*x));
    }
}

TEST(BandTensorsGpuCheck, CountsTheBackwardsVisits) {
    CCATTN_REQUIRE_SM80();
    const Config c{128, 128, DType::bf16};
    sm80::BackwardTile sm80_tile;
    ASSERT_TRUE(sm80::backward_tile_for(128, 128, sm80_tile));
    const sm80::KernelTiles tile = sm80_tile.kernel_tiles();
    auto params = [](const AttnTensors& t, const Mask& m, Device d) {
        core::AttnParams p;
        const Status s = api::fill_backward_params(backward_args(t, m, d), d == Device::cuda ? host_seqlens(t) : api::HostSeqlens{}, p);
        if (!s.ok()) throw std::runtime_error(s.to_string());
        return p;
    };
    for (const Problem& pr : {config_problem(c, 1000, 777, 8, 2, 2, 41),
                              varlen_problem(c, {500, 0, 1300, 3}, {200, 9, 1300, 50}, 4, 1)}) {
        AttnTensors t = make_forward_tensors(pr);
        add_backward_tensors(pr, t);
        const EdgeTensors edges(pr, random_edge_rows(lengths(pr), 43, 300), DType::int64);
        const core::AttnParams host = params(t, edges.host(), Device::cpu);
        std::int64_t want = 0;
        for (int b = 0; b < host.batch; ++b) {
            const core::Sequence seq = core::sequence(host, b);
            for (std::int64_t n = 0; n < core::num_tiles(seq.seqlen_k, tile.kv_tile); ++n)
                want += core::q_tile_range(core::tensor_band(host, b, seq), n * tile.kv_tile, tile.kv_tile,
                                           seq.seqlen_q, tile.q_tile, host.group).count();
        }
        std::int64_t visits = -1;
        ASSERT_TRUE(run_ok(cuda::check_band_rows(params(t, edges.device(), Device::cuda), &tile, visits)));
        EXPECT_EQ(visits, want);
        EXPECT_GT(want, 0);
    }
    // The built-in band's chunks (B = 2, 8 / 2 heads: few kv tiles, so the q range is cut).
    const Problem pr = config_problem(c, 4000, 1000, 8, 2, 2, 47);
    AttnTensors t = make_forward_tensors(pr);
    add_backward_tensors(pr, t);
    const Mask band = Mask::band(true, 4);
    const EdgeTensors edges(pr, builtin_edge_rows(lengths(pr), band), DType::int32);
    core::AttnParams p = params(t, edges.device(), Device::cuda);
    ASSERT_TRUE(run_ok(cuda::check_band_rows(p, &tile, p.band_visits)));
    const sm80::QChunks want = sm80::q_chunks(params(t, band, Device::cuda), tile, {}, 132);
    const sm80::QChunks got = sm80::q_chunks(p, tile, {}, 132);
    EXPECT_GT(want.count, 1);
    EXPECT_EQ(got.count, want.count);
    EXPECT_EQ(got.length, want.length);
}

}  // namespace
}  // namespace ccattn
