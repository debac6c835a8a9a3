// The band-tensor helpers (ccattn/band_helpers.h) describe their masks exactly (against literal
// predicates), and run on the CPU backend like the same predicate as mask_mod, bit for bit, and like
// the fp64 reference.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "ccattn/band_helpers.h"
#include "core/band.h"
#include "problem.h"

namespace ccattn::test {
namespace {

using Predicate = std::function<bool(std::int64_t i, std::int64_t j)>;

struct HelperCase {
    std::string name;
    BandEdges edges;
    std::int64_t seqlen_k;
    Predicate visible;  // the mask in words, for i < Sq, j < Sk
};

// Document of packed position x for documents of these lengths, and its first position.
std::pair<std::size_t, std::int64_t> document_of(const std::vector<std::int64_t>& lengths, std::int64_t x) {
    std::int64_t start = 0;
    for (std::size_t d = 0; d < lengths.size(); ++d) {
        if (x < start + lengths[d]) return {d, start};
        start += lengths[d];
    }
    return {lengths.size(), start};
}

std::vector<HelperCase> cases() {
    const std::vector<std::int64_t> docs = {37, 1, 0, 150, 64};  // 252 positions
    const std::int64_t block = 32, stride = 16;
    std::vector<std::int64_t> keys_per_doc;
    for (std::int64_t len : docs) keys_per_doc.push_back(nsa_blocks(len, block, stride));
    std::int64_t nsa_keys = 0;
    for (std::int64_t n : keys_per_doc) nsa_keys += n;
    return {
        {"prefix_lm", prefix_lm_band(300, 77), 300, [](std::int64_t i, std::int64_t j) { return j <= i || j < 77; }},
        {"prefix_lm_longer_than_seq", prefix_lm_band(50, 80), 50, [](std::int64_t, std::int64_t) { return true; }},
        {"chunked", chunked_band(300, 70), 300,
         [](std::int64_t i, std::int64_t j) { return j / 70 == i / 70 && j <= i; }},
        {"documents_causal", document_band(docs), 252,
         [docs](std::int64_t i, std::int64_t j) { return document_of(docs, i).first == document_of(docs, j).first && j <= i; }},
        {"documents_bidirectional", document_band(docs, false), 252,
         [docs](std::int64_t i, std::int64_t j) { return document_of(docs, i).first == document_of(docs, j).first; }},
        {"nsa_documents", nsa_document_band(docs, block, stride), nsa_keys,
         [=](std::int64_t i, std::int64_t j) {
             const auto [d, start] = document_of(docs, i);
             std::int64_t first = 0;
             for (std::size_t e = 0; e < d; ++e) first += keys_per_doc[e];
             const std::int64_t local = j - first;  // key j is block `local` of document d when in range
             return local >= 0 && local < keys_per_doc[d] && local * stride + block - 1 <= i - start;
         }},
    };
}

class BandHelpers : public ::testing::TestWithParam<HelperCase> {};

TEST_P(BandHelpers, EdgesDescribeTheMask) {
    const HelperCase& c = GetParam();
    for (std::size_t i = 0; i < c.edges.lo.size(); ++i)
        for (std::int64_t j = 0; j < c.seqlen_k; ++j) {
            const bool seen = core::clamp(c.edges.lo[i], 0, c.seqlen_k) <= j && j < core::clamp(c.edges.hi[i], 0, c.seqlen_k);
            ASSERT_EQ(seen, c.visible(std::int64_t(i), j)) << "row " << i << " key " << j;
        }
}

TEST_P(BandHelpers, RunLikeMaskModAndTheReference) {
    const HelperCase& c = GetParam();
    Config cfg;
    cfg.batch = 2;  // one row of edges shared by the batch (batch stride 0)
    cfg.seqlen_q = std::int64_t(c.edges.lo.size());
    cfg.seqlen_k = c.seqlen_k;
    cfg.heads_q = 4;
    cfg.heads_kv = 2;
    cfg.dim_qk = cfg.dim_v = 32;
    cfg.seed = 5;
    Problem pr(cfg);
    const Mask tensors = c.edges.mask(2);
    pr.run_forward(tensors);
    pr.run_backward(tensors);
    ASSERT_FALSE(HasFatalFailure());
    const Buffer out = pr.out, dq = pr.dq, dk = pr.dk, dv = pr.dv;
    const std::vector<float> lse = pr.lse;
    const core::AttnParams p = pr.params(tensors);
    cpu::Reference ref = cpu::reference_forward(p);
    cpu::reference_backward(p, ref);
    expect_forward_matches(pr, ref);
    expect_backward_matches(pr, ref);

    Mask mod;
    mod.kind = MaskKind::mask_mod;
    mod.mask_mod = [&c](int, int, std::int64_t i, std::int64_t j) { return c.visible(i, j); };
    pr.run_forward(mod);
    pr.run_backward(mod);
    ASSERT_FALSE(HasFatalFailure());
    EXPECT_TRUE(same_bits(out, pr.out));
    EXPECT_EQ(0, std::memcmp(lse.data(), pr.lse.data(), lse.size() * sizeof(float)));
    EXPECT_TRUE(same_bits(dq, pr.dq));
    EXPECT_TRUE(same_bits(dk, pr.dk));
    EXPECT_TRUE(same_bits(dv, pr.dv));
}

INSTANTIATE_TEST_SUITE_P(Cpu, BandHelpers, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<HelperCase>& info) { return info.param.name; });

// The packed edges of a varlen call: positions local to each sequence.
TEST(BandHelpersVarlen, PackedEdgesFollowCuSeqlens) {
    Config cfg;
    cfg.lens_q = {90, 0, 131};
    cfg.lens_k = {90, 0, 131};
    cfg.heads_q = cfg.heads_kv = 2;
    cfg.dim_qk = cfg.dim_v = 16;
    Problem pr(cfg);
    BandEdges e = chunked_band(90, 40);
    const BandEdges tail = chunked_band(131, 40);
    e.lo.insert(e.lo.end(), tail.lo.begin(), tail.lo.end());
    e.hi.insert(e.hi.end(), tail.hi.begin(), tail.hi.end());
    const Mask m = e.packed();
    pr.run_forward(m);
    pr.run_backward(m);
    ASSERT_FALSE(HasFatalFailure());
    const core::AttnParams p = pr.params(m);
    cpu::Reference ref = cpu::reference_forward(p);
    cpu::reference_backward(p, ref);
    expect_forward_matches(pr, ref);
    expect_backward_matches(pr, ref);
}

}  // namespace
}  // namespace ccattn::test
