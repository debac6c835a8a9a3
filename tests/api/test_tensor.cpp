// The public view type (ccattn/tensor.h): construction never writes past its fixed-size arrays, and
// views the calls cannot take are rejected by name.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "api/problem.h"
#include "ccattn/ccattn.h"

namespace ccattn::test {
namespace {

TEST(Tensor, ContiguousAboveMaxRankStoresNoSizes) {
    std::uint16_t data[64] = {};
    const Tensor t = Tensor::contiguous(data, DType::bf16, {1, 2, 2, 2, 16}, Device::cpu);
    EXPECT_EQ(t.rank, 5);
    EXPECT_EQ(int(t.device), int(Device::cpu));  // the field after the arrays is intact
    for (int d = 0; d < Tensor::kMaxRank; ++d) {
        EXPECT_EQ(t.shape[d], 0) << d;
        EXPECT_EQ(t.stride[d], 0) << d;
    }
    EXPECT_EQ(t.numel(), 0);
}

TEST(Tensor, RankAboveMaxIsRejectedByName) {
    Problem p(Dims{});
    ForwardArgs a = p.forward_args();
    a.q = Tensor::contiguous(a.q.data, DType::bf16, {2, 5, 2, 2, 16});
    const Problem::Snapshot before = p.snapshot();
    const Status s = ccattn::forward(a);
    EXPECT_EQ(int(s.code), int(Code::invalid_argument)) << s.to_string();
    EXPECT_EQ(s.argument, "q");
    EXPECT_NE(s.message.find("rank 5"), std::string::npos) << s.message;
    EXPECT_TRUE(p.snapshot() == before);
    // A hand-made view with a rank no call takes.
    a = p.forward_args();
    a.k.rank = 9;
    EXPECT_EQ(ccattn::forward(a).argument, "k");
    a.k.rank = -1;
    EXPECT_EQ(ccattn::forward(a).argument, "k");
}

}  // namespace
}  // namespace ccattn::test
