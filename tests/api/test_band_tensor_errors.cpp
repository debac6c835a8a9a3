// Band tensors (Mask::band_tensors) as bad input: wrong dtype, shape, device, or edges that
// decrease within a sequence. The call fails naming mask.lo or mask.hi (and the first offending row
// and sequence), and writes nothing; validate = false skips only the monotonicity check.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "api/problem.h"
#include "ccattn/ccattn.h"

namespace ccattn::test {
namespace {

Dims varlen_dims() {
    Dims d;
    d.cu_q = {0, 4, 10};
    d.cu_k = {0, 9, 14};
    return d;
}

// Causal band tensors for the problem: [B, Sq] (fixed, B 2, Sq 5) or [Tq] (varlen).
struct Edges {
    std::vector<std::int64_t> lo, hi;
    Tensor lo_t, hi_t;
    explicit Edges(const Dims& d) {
        const std::int64_t rows = d.varlen() ? d.cu_q.back() : d.batch * d.seqlen_q;
        for (std::int64_t r = 0; r < rows; ++r) {
            const std::int64_t i = d.varlen() ? r - (r >= d.cu_q[1] ? d.cu_q[1] : 0) : r % d.seqlen_q;
            lo.push_back(0);
            hi.push_back(i + 1);
        }
        lo_t = d.varlen() ? Tensor::contiguous(lo.data(), DType::int64, {rows})
                          : Tensor::contiguous(lo.data(), DType::int64, {d.batch, d.seqlen_q});
        hi_t = d.varlen() ? Tensor::contiguous(hi.data(), DType::int64, {rows})
                          : Tensor::contiguous(hi.data(), DType::int64, {d.batch, d.seqlen_q});
    }
    Mask mask(bool validate = true) const { return Mask::band_tensors(lo_t, hi_t, validate); }
};

Status rejected_forward(Problem& p, const Mask& m) {
    ForwardArgs a = p.forward_args();
    a.mask = m;
    const Problem::Snapshot before = p.snapshot();
    const Status s = ccattn::forward(a);
    EXPECT_TRUE(p.snapshot() == before) << "a rejected call wrote its outputs";
    return s;
}

void expect_invalid(const Status& s, const std::string& argument, const std::string& says = "") {
    EXPECT_EQ(int(s.code), int(Code::invalid_argument)) << s.to_string();
    EXPECT_EQ(s.argument, argument) << s.to_string();
    EXPECT_NE(s.message.find(says), std::string::npos) << s.to_string();
}

TEST(BandTensorErrors, ValidEdgesAreAccepted) {
    for (const Dims& d : {Dims{}, varlen_dims()}) {
        Problem p(d);
        Edges e(d);
        ForwardArgs a = p.forward_args();
        a.mask = e.mask();
        EXPECT_TRUE(ccattn::forward(a).ok());
        BackwardArgs b = p.backward_args();
        b.mask = e.mask();
        EXPECT_TRUE(ccattn::backward(b).ok());
    }
}

TEST(BandTensorErrors, DecreasingLoNamesRowAndSequence) {
    Problem p{Dims{}};
    Edges e{Dims{}};
    e.lo[5 + 2] = 2;  // sequence 1: lo 0 0 2 0 0
    e.hi[5 + 2] = 3;
    expect_invalid(rejected_forward(p, e.mask()), "mask.lo", "row 3 of sequence 1");
}

TEST(BandTensorErrors, DecreasingHiNamesRowAndSequence) {
    Problem p{Dims{}};
    Edges e{Dims{}};
    e.hi[3] = 1;  // sequence 0: hi 1 2 3 1 5
    expect_invalid(rejected_forward(p, e.mask()), "mask.hi", "row 3 of sequence 0");
}

TEST(BandTensorErrors, VarlenChecksWithinEachSequenceOnly) {
    const Dims d = varlen_dims();
    Problem p(d);
    Edges e(d);
    // hi falls from 4 to 1 between the sequences (rows 3 and 4): allowed.
    ForwardArgs a = p.forward_args();
    a.mask = e.mask();
    EXPECT_TRUE(ccattn::forward(a).ok());
    e.hi[4 + 1] = 0;  // sequence 1, row 1: hi 1 0
    expect_invalid(rejected_forward(p, e.mask()), "mask.hi", "row 1 of sequence 1");
}

TEST(BandTensorErrors, MonotoneAfterClampingIsAccepted) {
    // lo -9 -20 ... and hi 50 40 ... (Sk 7) clamp to 0 0 ... and 7 7 ...: monotone, every key seen.
    Problem p{Dims{}};
    Edges e{Dims{}};
    for (std::size_t r = 0; r < e.lo.size(); ++r) {
        e.lo[r] = -9 - std::int64_t(r);
        e.hi[r] = 50 - std::int64_t(r);
    }
    ForwardArgs a = p.forward_args();
    a.mask = e.mask();
    EXPECT_TRUE(ccattn::forward(a).ok());
}

TEST(BandTensorErrors, ValidateFalseSkipsOnlyTheValueCheck) {
    Problem p{Dims{}};
    Edges e{Dims{}};
    e.hi[3] = 1;
    ForwardArgs a = p.forward_args();
    a.mask = e.mask(false);
    EXPECT_TRUE(ccattn::forward(a).ok());
    Mask m = e.mask(false);
    m.tensor_band.hi.dtype = DType::fp32;
    expect_invalid(rejected_forward(p, m), "mask.hi", "int32 or int64");
}

TEST(BandTensorErrors, DtypeShapeDeviceAndNull) {
    for (const Dims& d : {Dims{}, varlen_dims()}) {
        Problem p(d);
        Edges e(d);
        Mask m = e.mask();
        m.tensor_band.lo.dtype = DType::bf16;
        expect_invalid(rejected_forward(p, m), "mask.lo", "int32 or int64");

        m = e.mask();
        m.tensor_band.hi = Tensor::contiguous(e.hi.data(), DType::int64, {3});
        expect_invalid(rejected_forward(p, m), "mask.hi");

        m = e.mask();
        m.tensor_band.lo = Tensor::contiguous(e.lo.data(), DType::int64, {1, 2, 5});
        expect_invalid(rejected_forward(p, m), "mask.lo");

        m = e.mask();
        m.tensor_band.hi.device = Device::cuda;
        expect_invalid(rejected_forward(p, m), "mask.hi", "same device");

        m = e.mask();
        m.tensor_band.lo.data = nullptr;
        expect_invalid(rejected_forward(p, m), "mask.lo", "null");
    }
}

TEST(BandTensorErrors, Int32EdgesAreRead) {
    Problem p{Dims{}};
    std::vector<std::int32_t> lo(10, 0), hi{1, 2, 3, 1, 5, 1, 2, 3, 4, 5};
    Mask m = Mask::band_tensors(Tensor::contiguous(lo.data(), DType::int32, {2, 5}),
                                Tensor::contiguous(hi.data(), DType::int32, {2, 5}));
    expect_invalid(rejected_forward(p, m), "mask.hi", "row 3 of sequence 0");
    hi[3] = 4;
    ForwardArgs a = p.forward_args();
    a.mask = m;
    EXPECT_TRUE(ccattn::forward(a).ok());
}

TEST(BandTensorErrors, BackwardRejectsToo) {
    Problem p{Dims{}};
    Edges e{Dims{}};
    e.lo[1] = 3;
    e.lo[2] = 1;
    BackwardArgs a = p.backward_args();
    a.mask = e.mask();
    const Problem::Snapshot before = p.snapshot();
    expect_invalid(ccattn::backward(a), "mask.lo", "row 2 of sequence 0");
    EXPECT_TRUE(p.snapshot() == before);
}

}  // namespace
}  // namespace ccattn::test
