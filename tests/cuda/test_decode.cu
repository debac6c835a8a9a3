// The split-KV decode (src/decode) on the GPU, against the fp64 oracle of tests/cpu/kvcache_case.h.
// Skipped without a device of compute capability >= 8.0.
//   KvCacheGpu: attention_with_kvcache over contiguous and paged caches (pages in random order, page
//     sizes 16 / 64 / 256), decode and short prefill (Sq 1..64, GQA), empty and per-sequence cache
//     lengths, appended rows (checked in the cache afterwards), query positions with compressed bands,
//     every head-dim pair and dtype, num_splits forced to 1, 3 and more splits than key tiles, and
//     the heuristic's choice; lse equal across split counts to fp32 rounding.
//   SplitForward: the plain forward routed through split-KV (ForwardArgs::num_splits), band variants,
//     mask_mod, block-sparse lists (every head-dim pair) and varlen.
//   KvCacheGraph: a call captured in a CUDA graph and replayed after the cache lengths changed.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cpu/kvcache_case.h"
#include "cuda/gpu_test_util.h"

namespace ccattn {
namespace {

using namespace test;

// Device copies of a KvCacheCase's tensors, with the call's views pointing at them.
struct DeviceCase {
    KvCacheCase& c;
    std::vector<std::pair<void*, DeviceBuffer>> copies;  // (host vector data, device copy)
    KvCacheArgs args;

    DeviceCase(KvCacheCase& kc, const Mask& mask, int num_splits) : c(kc), args(kc.args(mask)) {
        args.backend = Backend::cuda;
        args.num_splits = num_splits;
        put(args.q, c.q.data(), c.q.size() * 2);
        put(args.k_cache, c.k_cache.data(), c.k_cache.size() * 2);
        put(args.v_cache, c.v_cache.data(), c.v_cache.size() * 2);
        put(args.page_table, c.page_table.data(), c.page_table.size() * 4);
        put(args.cache_seqlens, c.seqlens.data(), c.seqlens.size() * 4);
        put(args.k_new, c.k_new.data(), c.k_new.size() * 2);
        put(args.v_new, c.v_new.data(), c.v_new.size() * 2);
        put(args.query_pos, c.query_pos.data(), c.query_pos.size() * 4);
        put(args.out, c.out.data(), c.out.size() * 2);
        put(args.lse, c.lse.data(), c.lse.size() * 4);
    }
    void put(Tensor& t, void* host, std::size_t bytes) {
        if (!t.defined()) return;
        DeviceBuffer d(bytes);
        d.upload(host);
        t.data = d.data();
        t.device = Device::cuda;
        copies.emplace_back(host, std::move(d));
    }
    // Everything back into the host vectors (outputs and the appended cache rows), guards checked.
    void download() {
        cuda_check(cudaDeviceSynchronize(), "sync");
        for (auto& [host, d] : copies) {
            d.download(host);
            EXPECT_TRUE(d.guards_intact()) << "a write outside a device tensor";
        }
    }
    Status run() { return attention_with_kvcache(args); }
};

double norm_tol(DType t) { return t == DType::bf16 ? 1e-2 : 2.5e-3; }
double max_tol(DType t) { return t == DType::bf16 ? 2.5e-2 : 5e-3; }

void run_on_gpu(const KvCacheShape& s, const Mask& mask, int num_splits) {
    KvCacheCase c(s);
    DeviceCase d(c, mask, num_splits);
    ASSERT_TRUE(run_ok(d.run()));
    d.download();
    c.expect_matches(mask, norm_tol(s.dtype), max_tol(s.dtype));
    EXPECT_TRUE(c.cache_holds_keys());
}

class KvCacheGpu : public ::testing::TestWithParam<std::int64_t> {};  // page size, 0: contiguous

TEST_P(KvCacheGpu, DecodeAcrossLengthsAndSplits) {
    CCATTN_REQUIRE_SM80();
    for (int splits : {0, 1, 3, 64}) {
        KvCacheShape s;
        s.batch = 5;
        s.heads_q = 32;  // 16 packed rows per KV head: one full q-tile
        s.heads_kv = 2;
        s.dim_qk = s.dim_v = 128;
        s.cache_lens = {0, 1, 300, 1023, 700};
        s.new_rows = 1;
        s.capacity = 1024;
        s.page_size = GetParam();
        s.seed = 100 + std::uint64_t(splits);
        SCOPED_TRACE("num_splits " + std::to_string(splits));
        run_on_gpu(s, Mask::none(), splits);
        run_on_gpu(s, Mask::band(true), splits);
        run_on_gpu(s, Mask::band(true, 1, std::nullopt, 100), splits);  // sliding window
    }
}

TEST_P(KvCacheGpu, ShortPrefillWithPositions) {
    CCATTN_REQUIRE_SM80();
    for (std::int64_t sq : {2, 5, 16, 64}) {
        KvCacheShape s;
        s.batch = 3;
        s.seqlen_q = sq;
        s.heads_q = 8;
        s.heads_kv = 2;
        s.new_rows = sq;
        s.cache_lens = {0, 77, 400};
        s.capacity = 512;
        s.page_size = GetParam();
        s.seed = 200 + std::uint64_t(sq);
        SCOPED_TRACE("sq " + std::to_string(sq));
        run_on_gpu(s, Mask::band(true), 0);
        run_on_gpu(s, Mask::band(true), 7);
        s.query_pos = {5, 1000, 3000};  // compressed keys: cf 8, NSA-like delta, a window
        run_on_gpu(s, Mask::band(true, 8, -7), 0);
        run_on_gpu(s, Mask::band(true, 8, 0, 20), 5);
        Mask per_element = Mask::band(true, 8, -7);
        per_element.kind = MaskKind::mask_mod;  // CUDA evaluates the band fields per element
        KvCacheCase c(s);
        DeviceCase d(c, per_element, 4);
        ASSERT_TRUE(run_ok(d.run()));
        d.download();
        c.expect_matches(Mask::band(true, 8, -7), norm_tol(s.dtype), max_tol(s.dtype));
    }
}

TEST_P(KvCacheGpu, EveryHeadDimPairAndDtype) {
    CCATTN_REQUIRE_SM80();
    for (const Config& cfg : all_configs()) {
        KvCacheShape s;
        s.dim_qk = cfg.dim_qk;
        s.dim_v = cfg.dim_v;
        s.dtype = cfg.dtype;
        s.batch = 2;
        s.heads_q = 16;
        s.heads_kv = 4;
        s.cache_lens = {129, 511};
        s.new_rows = 3;
        s.capacity = 768;
        s.page_size = GetParam();
        SCOPED_TRACE(std::to_string(cfg.dim_qk) + "/" + std::to_string(cfg.dim_v) + " " + dtype_name(cfg.dtype));
        run_on_gpu(s, Mask::band(true), 0);
        run_on_gpu(s, Mask::band(true), 9);
    }
}

// Split-KV is exact: the lse of any split count equals the unsplit one to fp32 rounding.
TEST_P(KvCacheGpu, SplitCountsAgree) {
    CCATTN_REQUIRE_SM80();
    KvCacheShape s;
    s.batch = 2;
    s.heads_q = 16;
    s.heads_kv = 1;
    s.cache_lens = {4000, 2500};
    s.capacity = 4096;
    s.page_size = GetParam();
    std::vector<float> unsplit;
    for (int splits : {1, 2, 13, 256}) {
        KvCacheCase c(s);
        DeviceCase d(c, Mask::none(), splits);
        ASSERT_TRUE(run_ok(d.run()));
        d.download();
        if (unsplit.empty()) unsplit = c.lse;
        for (std::size_t e = 0; e < unsplit.size(); ++e)
            ASSERT_NEAR(c.lse[e], unsplit[e], 2e-6 * (1 + std::fabs(unsplit[e]))) << splits << " splits, row " << e;
    }
}

INSTANTIATE_TEST_SUITE_P(Layouts, KvCacheGpu, ::testing::Values(0, 16, 64, 256),
                         [](const auto& info) { return info.param ? "paged" + std::to_string(info.param) : std::string("contiguous"); });

// A plain forward of `mask` with num_splits against the oracle of `band` (the function it encodes).
void expect_split_forward(AttnTensors& t, const Mask& mask, const Mask& band, int splits) {
    ForwardArgs a = forward_args(t, mask, Device::cuda);
    a.num_splits = splits;
    t.out.poison();
    t.out.upload();
    ASSERT_TRUE(run_ok(forward(a)));
    t.out.download();
    t.lse.download();
    const cpu::Reference ref = reference(t, band);
    EXPECT_TRUE(close_to_dense(t.out, ref.out, output_tolerance(t.out.dtype), "out")) << splits << " splits";
    EXPECT_TRUE(lse_close(t.lse, ref.lse, "lse")) << splits << " splits";
}

// The plain forward through split-KV: forced split counts, band variants, mask_mod, varlen.
TEST(SplitForward, MatchesTheOracle) {
    CCATTN_REQUIRE_SM80();
    const Mask bands[] = {Mask::none(), Mask::band(true), Mask::band(true, 4, 2700), Mask::band(true, 1, 650, 50)};
    for (int splits : {2, 7, 40}) {
        Problem pr = config_problem({128, 128, DType::bf16}, 3, 700, 16, 2, 2, std::uint64_t(splits));
        AttnTensors t = make_forward_tensors(pr);
        for (const Mask& band : bands) {
            for (bool per_element : {false, true}) {
                Mask m = band;
                if (per_element) m.kind = MaskKind::mask_mod;
                expect_split_forward(t, m, band, splits);
            }
        }
    }
}

// Block-sparse lists with the public tiles, split: lists per query head, run unpacked.
TEST(SplitForward, BlockSparse) {
    CCATTN_REQUIRE_SM80();
    for (const Config& cfg : all_configs()) {
        if (cfg.dtype != DType::bf16) continue;
        Problem pr = config_problem(cfg, 5, 900, 8, 2, 2, 11);
        std::int64_t tm = 0, tn = 0;
        ASSERT_TRUE(run_ok(cuda_block_sparse_tiles(pr.dim_qk, pr.dim_v, pr.dtype, tm, tn)));
        AttnTensors t = make_forward_tensors(pr);
        const Mask band = Mask::band(true, 2, 1500, 300);  // causal, compressed, windowed: full and partial tiles
        DeviceBlockSparse lists;
        const Mask m = block_sparse_mask(band, pr, tm, tn, lists);
        SCOPED_TRACE(std::to_string(cfg.dim_qk));
        for (int splits : {0, 3, 17}) expect_split_forward(t, m, band, splits);
        // Lists of other tiles are rejected whether or not the call splits.
        DeviceBlockSparse other;
        ForwardArgs a = forward_args(t, block_sparse_mask(band, pr, tm / 2, tn, other), Device::cuda);
        a.num_splits = 4;
        EXPECT_EQ(forward(a).argument, "mask.block_sparse.tile_m");
    }
}

TEST(SplitForward, Varlen) {
    CCATTN_REQUIRE_SM80();
    Problem pr;
    pr.cu_seqlens_q = {0, 1, 1, 5, 9};
    pr.cu_seqlens_k = {0, 300, 301, 301, 1500};  // an empty key range, a single key
    pr.heads_q = 8;
    pr.heads_kv = 2;
    AttnTensors t = make_forward_tensors(pr);
    const Mask m = Mask::band(true, 2, 0);
    expect_split_forward(t, m, m, 6);
}

// Captured once, replayed with new contents: the call never reads device contents on the host.
TEST(KvCacheGraph, CaptureAndReplay) {
    CCATTN_REQUIRE_SM80();
    KvCacheShape s;
    s.batch = 3;
    s.heads_q = 16;
    s.heads_kv = 2;
    s.cache_lens = {10, 600, 2000};
    s.capacity = 2048;
    s.page_size = 64;
    KvCacheCase c(s);
    DeviceCase d(c, Mask::band(true), 0);
    cudaStream_t stream;
    cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
    d.args.stream = stream;
    // One call before capture, as with any CUDA graph: the process's first call sets up what is set
    // once (kernel attributes, the memory pool's release threshold). Its appends are the capture's.
    ASSERT_TRUE(run_ok(d.run()));
    cuda_check(cudaStreamSynchronize(stream), "warm-up");
    cudaGraph_t graph;
    cuda_check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "begin capture");
    const Status st = d.run();
    cuda_check(cudaStreamEndCapture(stream, &graph), "end capture");
    ASSERT_TRUE(run_ok(st));
    cudaGraphExec_t exec;
    cuda_check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
    for (std::vector<std::int32_t> lens : {std::vector<std::int32_t>{10, 600, 2000}, std::vector<std::int32_t>{0, 599, 33}}) {
        // Lengths at most the filled ones read a prefix of the same rows: the oracle of the new lengths.
        KvCacheShape now = s;
        now.cache_lens = lens;
        KvCacheCase expected(now);
        expected.keys = c.keys;
        expected.values = c.values;
        for (int b = 0; b < s.batch; ++b) {
            expected.keys[std::size_t(b)].resize(std::size_t(lens[std::size_t(b)] * s.heads_kv * s.dim_qk));
            expected.values[std::size_t(b)].resize(std::size_t(lens[std::size_t(b)] * s.heads_kv * s.dim_v));
        }
        expected.q = c.q;
        cuda_check(cudaMemcpy(const_cast<void*>(d.args.cache_seqlens.data), lens.data(), lens.size() * 4, cudaMemcpyHostToDevice),
                   "lengths");
        cuda_check(cudaGraphLaunch(exec, stream), "replay");
        cuda_check(cudaStreamSynchronize(stream), "sync");
        d.download();
        expected.out = c.out;
        expected.lse = c.lse;
        expected.expect_matches(Mask::band(true), norm_tol(s.dtype), max_tol(s.dtype));
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace ccattn
