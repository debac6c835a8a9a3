// Host callables (mask_mod, custom band, block-sparse's predicate) that throw: the call reports
// Code::internal and leaves every output as it was, forward and backward.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <ostream>
#include <stdexcept>
#include <string>

#include "api/problem.h"
#include "ccattn/block_sparse.h"
#include "ccattn/ccattn.h"

namespace ccattn::test {
namespace {

// Throws once sequence 1 is reached: sequence 0's rows are done (and were once written) by then.
[[noreturn]] void fail() { throw std::runtime_error("callable failed"); }

bool throw_in_sequence_1(int b, int, std::int64_t i, std::int64_t j) {
    if (b == 1) fail();
    return j <= i + 2;
}

struct ThrowingMask {
    std::string name;
    // The mask for a problem of dims d; block-sparse lists live in `lists`.
    std::function<Mask(const Dims& d, BlockSparseLists& lists)> make;
    friend void PrintTo(const ThrowingMask& m, std::ostream* os) { *os << m.name; }
};

std::vector<ThrowingMask> throwing_masks() {
    return {
        {"mask_mod",
         [](const Dims&, BlockSparseLists&) {
             Mask m;
             m.kind = MaskKind::mask_mod;
             m.mask_mod = throw_in_sequence_1;
             return m;
         }},
        {"custom_band",
         [](const Dims&, BlockSparseLists&) {
             Mask m;
             m.kind = MaskKind::custom_band;
             m.custom_band.lo = [](int, std::int64_t) { return std::int64_t(0); };
             m.custom_band.hi = [](int b, std::int64_t i) {
                 if (b == 1) fail();
                 return i + 3;
             };
             return m;
         }},
        {"block_sparse",
         [](const Dims& d, BlockSparseLists& lists) {
             BlockSparseLists::Shape shape;
             shape.batch = d.varlen() ? int(d.cu_q.size()) - 1 : d.batch;
             shape.seqlen_q = d.seqlen_q;
             shape.seqlen_k = d.seqlen_k;
             if (d.varlen()) {
                 shape.cu_seqlens_q = d.cu_q.data();
                 shape.cu_seqlens_k = d.cu_k.data();
             }
             shape.tile_m = 2;
             shape.tile_n = 3;
             const Status s = BlockSparseLists::from_band(Mask::band(true, 1, 2), shape, lists);
             EXPECT_TRUE(s.ok()) << s.to_string();
             Mask m = lists.mask();
             m.block_sparse.mask_mod = throw_in_sequence_1;
             return m;
         }},
    };
}

class ThrowingCallable : public ::testing::TestWithParam<ThrowingMask> {};

TEST_P(ThrowingCallable, WritesNothing) {
    for (bool varlen : {false, true}) {
        SCOPED_TRACE(varlen ? "varlen" : "fixed length");
        Dims d;
        if (varlen) {
            d.cu_q = {0, 4, 10};
            d.cu_k = {0, 9, 14};
        }
        Problem p(d);
        BlockSparseLists lists;
        const Mask mask = GetParam().make(d, lists);
        ForwardArgs fa = p.forward_args();
        fa.mask = mask;
        fa.num_threads = 1;  // sequence 0 first, so it is finished when sequence 1 throws
        Problem::Snapshot before = p.snapshot();
        Status s = ccattn::forward(fa);
        EXPECT_EQ(int(s.code), int(Code::internal)) << s.to_string();
        EXPECT_NE(s.message.find("callable failed"), std::string::npos) << s.message;
        EXPECT_TRUE(p.snapshot() == before) << "a failed forward wrote its outputs";

        BackwardArgs ba = p.backward_args();
        ba.mask = mask;
        ba.num_threads = 1;
        before = p.snapshot();
        s = ccattn::backward(ba);
        EXPECT_EQ(int(s.code), int(Code::internal)) << s.to_string();
        EXPECT_TRUE(p.snapshot() == before) << "a failed backward wrote its gradients";
    }
}

INSTANTIATE_TEST_SUITE_P(Api, ThrowingCallable, ::testing::ValuesIn(throwing_masks()),
                         [](const ::testing::TestParamInfo<ThrowingMask>& i) { return i.param.name; });

}  // namespace
}  // namespace ccattn::test
