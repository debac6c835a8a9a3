// Shared helpers of the GPU tests: device buffers framed by guard bands, random strided tensors kept on
// the host and mirrored on the device, NaN-poisoned outputs, and comparisons against the fp64 oracle
// (cpu::reference_forward / reference_backward) and the CPU backend.
//
// Typical use:
//   CCATTN_REQUIRE_GPU();
//   Problem pr; pr.seqlen_q = 113; ...
//   AttnTensors t = make_forward_tensors(pr);           // q, k, v random; out, lse poisoned (NaN)
//   ASSERT_TRUE(run_ok(forward(forward_args(t, mask, Device::cuda))));
//   t.out.download(); t.lse.download();
//   cpu::Reference ref = reference(t, band_mask);
//   EXPECT_TRUE(close_to_dense(t.out, ref.out, output_tolerance(pr.dtype), "out"));
//   EXPECT_TRUE(lse_close(t.lse, ref.lse, "lse"));
//   EXPECT_TRUE(untouched_outside_view(t.out, "out"));
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "api/validate.h"
#include "ccattn/block_sparse.h"
#include "ccattn/ccattn.h"
#include "core/dtype.h"
#include "core/params.h"
#include "cpu/reference.h"

// Skips the current test when no CUDA device is visible (GPU tests built on a machine without one).
#define CCATTN_REQUIRE_GPU()                                                    \
    do {                                                                        \
        if (!::ccattn::cuda_available()) GTEST_SKIP() << "no CUDA device visible"; \
    } while (0)

namespace ccattn::test {

// Test set-up failures are exceptions: GoogleTest reports them as failures with this message.
inline void cuda_check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

inline ::testing::AssertionResult run_ok(const Status& s) {
    if (s.ok()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << s.to_string();
}

// Device memory framed by two guard bands of a known byte: a kernel writing just outside the buffer
// shows up in guards_intact() even without compute-sanitizer.
class DeviceBuffer {
  public:
    static constexpr std::size_t kGuard = 4096;  // keeps data() 256-byte aligned
    static constexpr unsigned char kGuardByte = 0xA5;

    DeviceBuffer() = default;
    explicit DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
        cuda_check(cudaMalloc(&base_, bytes + 2 * kGuard), "cudaMalloc");
        cuda_check(cudaMemset(base_, kGuardByte, bytes + 2 * kGuard), "cudaMemset");
    }
    ~DeviceBuffer() {
        if (base_) cudaFree(base_);
    }
    DeviceBuffer(DeviceBuffer&& o) noexcept { swap(o); }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        swap(o);
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    void* data() const { return base_ ? static_cast<char*>(base_) + kGuard : nullptr; }
    std::size_t bytes() const { return bytes_; }
    bool allocated() const { return base_ != nullptr; }

    void upload(const void* host) { cuda_check(cudaMemcpy(data(), host, bytes_, cudaMemcpyHostToDevice), "upload"); }
    void download(void* host) const {
        cuda_check(cudaMemcpy(host, data(), bytes_, cudaMemcpyDeviceToHost), "download");
    }
    bool guards_intact() const {
        std::vector<unsigned char> g(kGuard);
        for (const char* at : {static_cast<const char*>(base_), static_cast<const char*>(base_) + kGuard + bytes_}) {
            cuda_check(cudaMemcpy(g.data(), at, kGuard, cudaMemcpyDeviceToHost), "guard download");
            for (unsigned char c : g)
                if (c != kGuardByte) return false;
        }
        return true;
    }

  private:
    void swap(DeviceBuffer& o) noexcept {
        std::swap(base_, o.base_);
        std::swap(bytes_, o.bytes_);
    }
    void* base_ = nullptr;
    std::size_t bytes_ = 0;
};

// A strided tensor with host bytes covering its whole extent (padding included) and, optionally, a
// device mirror of the same layout.
struct TestTensor {
    DType dtype = DType::bf16;
    int rank = 0;
    std::int64_t shape[4] = {0, 0, 0, 0};
    std::int64_t stride[4] = {0, 0, 0, 0};
    std::vector<unsigned char> host;
    DeviceBuffer device;

    std::int64_t numel() const {
        std::int64_t n = 1;
        for (int d = 0; d < rank; ++d) n *= shape[d];
        return n;
    }
    int elem_bytes() const { return dtype_size(dtype); }
    std::int64_t offset(const std::int64_t* idx) const {
        std::int64_t o = 0;
        for (int d = 0; d < rank; ++d) o += idx[d] * stride[d];
        return o;
    }
    // Row-major index -> multi-index.
    void unravel(std::int64_t linear, std::int64_t* idx) const {
        for (int d = rank - 1; d >= 0; --d) {
            idx[d] = shape[d] ? linear % shape[d] : 0;
            linear = shape[d] ? linear / shape[d] : 0;
        }
    }
    double get(std::int64_t off) const {
        const unsigned char* p = host.data() + off * elem_bytes();
        switch (dtype) {
            case DType::bf16:
            case DType::fp16: {
                std::uint16_t h;
                std::memcpy(&h, p, 2);
                return core::to_float(h, dtype == DType::bf16);
            }
            case DType::fp32: {
                float f;
                std::memcpy(&f, p, 4);
                return f;
            }
            case DType::int32: {
                std::int32_t i;
                std::memcpy(&i, p, 4);
                return i;
            }
            case DType::int64: {
                std::int64_t i;
                std::memcpy(&i, p, 8);
                return double(i);
            }
        }
        return 0;
    }
    void set(std::int64_t off, double v) {
        unsigned char* p = host.data() + off * elem_bytes();
        switch (dtype) {
            case DType::bf16:
            case DType::fp16: {
                std::uint16_t h = core::from_float(float(v), dtype == DType::bf16);
                std::memcpy(p, &h, 2);
                break;
            }
            case DType::fp32: {
                float f = float(v);
                std::memcpy(p, &f, 4);
                break;
            }
            case DType::int32: {
                std::int32_t i = std::int32_t(v);
                std::memcpy(p, &i, 4);
                break;
            }
            case DType::int64: {
                std::int64_t i = std::int64_t(v);
                std::memcpy(p, &i, 8);
                break;
            }
        }
    }
    Tensor view(Device dev) const {
        Tensor t;
        t.dtype = dtype;
        t.rank = rank;
        t.device = dev;
        for (int d = 0; d < rank; ++d) {
            t.shape[d] = shape[d];
            t.stride[d] = stride[d];
        }
        if (dev == Device::cuda) {
            if (!device.allocated()) throw std::runtime_error("TestTensor has no device copy");
            t.data = device.data();
        } else {
            // Never null, so that an empty tensor still counts as "defined".
            t.data = const_cast<unsigned char*>(host.empty() ? reinterpret_cast<const unsigned char*>(&shape[0]) : host.data());
        }
        return t;
    }
    void upload() {
        if (device.allocated()) device.upload(host.data());
    }
    void download() { device.download(host.data()); }
    // Every byte 0xFF: NaN for bf16, fp16 and fp32.
    void poison() { std::fill(host.begin(), host.end(), 0xFF); }
};

// A tensor of `shape` whose strides are row-major plus `pad` extra elements after every dimension but
// the last (pad > 0 gives a non-contiguous view with a contiguous last dimension). Bytes cover the
// extent; the host copy starts poisoned.
inline TestTensor make_tensor(DType dtype, std::vector<std::int64_t> shape, std::int64_t pad = 0,
                              bool on_device = true) {
    TestTensor t;
    t.dtype = dtype;
    t.rank = int(shape.size());
    std::int64_t st = 1;
    for (int d = t.rank - 1; d >= 0; --d) {
        t.shape[d] = shape[std::size_t(d)];
        t.stride[d] = st;
        st = st * t.shape[d] + pad;
    }
    std::int64_t extent = 1;  // largest offset + 1
    for (int d = 0; d < t.rank; ++d) {
        if (t.shape[d] == 0) extent = 0;
        else extent += (t.shape[d] - 1) * t.stride[d];
    }
    t.host.assign(std::size_t(extent) * std::size_t(dtype_size(dtype)), 0xFF);
    if (on_device) t.device = DeviceBuffer(t.host.size());
    return t;
}

inline void fill_normal(TestTensor& t, std::mt19937_64& rng, double stddev = 1.0) {
    std::normal_distribution<double> dist(0.0, stddev);
    std::int64_t idx[4];
    for (std::int64_t e = 0; e < t.numel(); ++e) {
        t.unravel(e, idx);
        t.set(t.offset(idx), dist(rng));
    }
}

inline TestTensor int32_vector(const std::vector<std::int32_t>& v, bool on_device = true) {
    TestTensor t = make_tensor(DType::int32, {std::int64_t(v.size())}, 0, on_device);
    if (!v.empty()) std::memcpy(t.host.data(), v.data(), v.size() * 4);
    t.upload();
    return t;
}

// One attention problem: sizes, dtype, layout.
struct Problem {
    int batch = 1;
    std::int64_t seqlen_q = 1, seqlen_k = 1;                // fixed length
    std::vector<std::int32_t> cu_seqlens_q, cu_seqlens_k;  // non-empty: varlen (batch = size - 1)
    int heads_q = 1, heads_kv = 1;
    int dim_qk = 64, dim_v = 64;
    DType dtype = DType::bf16;
    std::int64_t pad = 0;  // extra elements after every row / head of q, k, v, out, grads (multiple of 8)
    std::uint64_t seed = 1;

    bool varlen() const { return !cu_seqlens_q.empty(); }
    int num_seqs() const { return varlen() ? int(cu_seqlens_q.size()) - 1 : batch; }
    std::int64_t rows_q() const { return varlen() ? cu_seqlens_q.back() : seqlen_q; }
    std::int64_t rows_k() const { return varlen() ? cu_seqlens_k.back() : seqlen_k; }
    // [B, S, H, D] or [T, H, D]
    std::vector<std::int64_t> shape(bool keys, int heads, int dim) const {
        if (varlen()) return {keys ? rows_k() : rows_q(), heads, dim};
        return {batch, keys ? seqlen_k : seqlen_q, heads, dim};
    }
    std::vector<std::int64_t> lse_shape() const {
        if (varlen()) return {heads_q, rows_q()};
        return {batch, heads_q, seqlen_q};
    }
};

struct AttnTensors {
    TestTensor q, k, v, out, lse, cu_q, cu_k;
    TestTensor dout, dq, dk, dv;  // add_backward_tensors
};

// q, k, v ~ N(0, 1) rounded to the dtype; out and lse poisoned; all uploaded.
inline AttnTensors make_forward_tensors(const Problem& pr) {
    AttnTensors t;
    std::mt19937_64 rng(pr.seed);
    t.q = make_tensor(pr.dtype, pr.shape(false, pr.heads_q, pr.dim_qk), pr.pad);
    t.k = make_tensor(pr.dtype, pr.shape(true, pr.heads_kv, pr.dim_qk), pr.pad);
    t.v = make_tensor(pr.dtype, pr.shape(true, pr.heads_kv, pr.dim_v), pr.pad);
    t.out = make_tensor(pr.dtype, pr.shape(false, pr.heads_q, pr.dim_v), pr.pad);
    t.lse = make_tensor(DType::fp32, pr.lse_shape(), pr.pad);
    for (TestTensor* x : {&t.q, &t.k, &t.v}) fill_normal(*x, rng);
    for (TestTensor* x : {&t.q, &t.k, &t.v, &t.out, &t.lse}) x->upload();
    if (pr.varlen()) {
        t.cu_q = int32_vector(pr.cu_seqlens_q);
        t.cu_k = int32_vector(pr.cu_seqlens_k);
    }
    return t;
}

// dout ~ N(0, 1); dq, dk, dv poisoned; all uploaded.
inline void add_backward_tensors(const Problem& pr, AttnTensors& t) {
    std::mt19937_64 rng(pr.seed * 7919 + 17);
    t.dout = make_tensor(pr.dtype, pr.shape(false, pr.heads_q, pr.dim_v), pr.pad);
    t.dq = make_tensor(pr.dtype, pr.shape(false, pr.heads_q, pr.dim_qk), pr.pad);
    t.dk = make_tensor(pr.dtype, pr.shape(true, pr.heads_kv, pr.dim_qk), pr.pad);
    t.dv = make_tensor(pr.dtype, pr.shape(true, pr.heads_kv, pr.dim_v), pr.pad);
    fill_normal(t.dout, rng);
    for (TestTensor* x : {&t.dout, &t.dq, &t.dk, &t.dv}) x->upload();
}

inline ForwardArgs forward_args(const AttnTensors& t, const Mask& mask, Device dev) {
    ForwardArgs a;
    a.q = t.q.view(dev);
    a.k = t.k.view(dev);
    a.v = t.v.view(dev);
    a.out = t.out.view(dev);
    a.lse = t.lse.view(dev);
    if (t.cu_q.rank) {
        a.cu_seqlens_q = t.cu_q.view(dev);
        a.cu_seqlens_k = t.cu_k.view(dev);
    }
    a.mask = mask;
    a.backend = dev == Device::cuda ? Backend::cuda : Backend::cpu;
    return a;
}

inline BackwardArgs backward_args(const AttnTensors& t, const Mask& mask, Device dev) {
    BackwardArgs a;
    a.q = t.q.view(dev);
    a.k = t.k.view(dev);
    a.v = t.v.view(dev);
    a.out = t.out.view(dev);
    a.lse = t.lse.view(dev);
    a.dout = t.dout.view(dev);
    a.dq = t.dq.view(dev);
    a.dk = t.dk.view(dev);
    a.dv = t.dv.view(dev);
    if (t.cu_q.rank) {
        a.cu_seqlens_q = t.cu_q.view(dev);
        a.cu_seqlens_k = t.cu_k.view(dev);
    }
    a.mask = mask;
    a.backend = dev == Device::cuda ? Backend::cuda : Backend::cpu;
    return a;
}

// The fp64 oracle on the host copies of q, k, v (and dout for the backward). `mask` must be
// host-evaluable (a band, or a mask with host callables): the GPU's mask_mod and block-sparse paths are
// checked against the band they encode. The host copies of out / lse are only read for shapes.
inline cpu::Reference reference(const AttnTensors& t, const Mask& mask, bool backward = false,
                                std::optional<float> scale = {}) {
    core::AttnParams p;
    BackwardArgs ba = backward_args(t, mask, Device::cpu);
    ForwardArgs fa = forward_args(t, mask, Device::cpu);
    ba.scale = fa.scale = scale;
    Status s = backward ? api::fill_backward_params(ba, {}, p) : api::fill_forward_params(fa, {}, p);
    if (!s.ok()) throw std::runtime_error("reference params: " + s.to_string());
    cpu::Reference r = cpu::reference_forward(p);
    if (backward) cpu::reference_backward(p, r);
    return r;
}

// The CPU backend's out and lse for the same inputs (fresh host tensors of the same shapes).
struct CpuForward {
    TestTensor out, lse;
};
inline CpuForward cpu_forward(const AttnTensors& t, const Mask& mask) {
    CpuForward c;
    c.out = make_tensor(t.out.dtype, std::vector<std::int64_t>(t.out.shape, t.out.shape + t.out.rank), 0, false);
    c.lse = make_tensor(DType::fp32, std::vector<std::int64_t>(t.lse.shape, t.lse.shape + t.lse.rank), 0, false);
    ForwardArgs a = forward_args(t, mask, Device::cpu);
    a.out = c.out.view(Device::cpu);
    a.lse = c.lse.view(Device::cpu);
    Status s = forward(a);
    if (!s.ok()) throw std::runtime_error("cpu backend forward: " + s.to_string());
    return c;
}

// A [B, S, H, D] / [T, H, D] tensor in the reference's dense order ((row * H + h) * D + d), and an lse
// tensor [B, H, S] / [H, T] in the reference's order (row * H + h).
inline std::vector<double> dense(const TestTensor& t) {
    std::vector<double> d(std::size_t(t.numel()));
    std::int64_t idx[4];
    for (std::int64_t e = 0; e < t.numel(); ++e) {
        t.unravel(e, idx);
        d[std::size_t(e)] = t.get(t.offset(idx));
    }
    return d;
}
inline std::int64_t lse_dense_index(const TestTensor& t, const std::int64_t* idx, std::int64_t* row, std::int64_t* head) {
    const bool varlen = t.rank == 2;
    const std::int64_t heads = varlen ? t.shape[0] : t.shape[1];
    *head = varlen ? idx[0] : idx[1];
    *row = varlen ? idx[1] : idx[0] * t.shape[2] + idx[2];
    return *row * heads + *head;
}
inline std::vector<double> dense_lse(const TestTensor& t) {
    std::vector<double> d(std::size_t(t.numel()));
    std::int64_t idx[4], row, head;
    for (std::int64_t e = 0; e < t.numel(); ++e) {
        t.unravel(e, idx);
        d[std::size_t(lse_dense_index(t, idx, &row, &head))] = t.get(t.offset(idx));
    }
    return d;
}

// Per element: |got - ref| <= elem * (|ref| + rms(ref)), exact zero where ref is exactly 0 (empty
// rows, unseen keys), never NaN/inf; and over the tensor ||got - ref|| <= l2 * ||ref||.
struct Tolerance {
    double elem, l2;
};
inline Tolerance output_tolerance(DType dt) {
    // P and out are rounded to the dtype: ~2^-9 (bf16) / 2^-11 (fp16) relative, with margin.
    return dt == DType::bf16 ? Tolerance{2.5e-2, 1e-2} : Tolerance{5e-3, 2.5e-3};
}

inline std::string index_string(const TestTensor& t, const std::int64_t* idx) {
    std::ostringstream s;
    s << "[";
    for (int d = 0; d < t.rank; ++d) s << (d ? ", " : "") << idx[d];
    s << "]";
    return s.str();
}

inline ::testing::AssertionResult close_to_dense(const TestTensor& got, const std::vector<double>& ref, Tolerance tol,
                                                 const std::string& name) {
    if (std::int64_t(ref.size()) != got.numel())
        return ::testing::AssertionFailure() << name << ": reference has " << ref.size() << " elements, tensor "
                                             << got.numel();
    double ss_ref = 0;
    for (double r : ref) ss_ref += r * r;
    const double rms = ref.empty() ? 0 : std::sqrt(ss_ref / double(ref.size()));
    double ss_err = 0, worst_ratio = -1;
    std::int64_t bad = 0, idx[4];
    std::string worst;
    for (std::int64_t e = 0; e < got.numel(); ++e) {
        got.unravel(e, idx);
        const double g = got.get(got.offset(idx)), r = ref[std::size_t(e)];
        const double err = std::fabs(g - r);
        const double bound = tol.elem * (std::fabs(r) + rms);
        const bool ok = std::isfinite(g) && (r == 0.0 ? g == 0.0 : err <= bound);
        ss_err += std::isfinite(g) ? err * err : 1e300;
        const double ratio = ok ? err / (bound > 0 ? bound : 1) : (std::isfinite(g) ? 1e300 : 2e300);
        if (!ok) ++bad;
        if (ratio > worst_ratio) {
            worst_ratio = ratio;
            std::ostringstream s;
            s << index_string(got, idx) << " got " << g << " expected " << r;
            worst = s.str();
        }
    }
    const double rel_l2 = ss_ref > 0 ? std::sqrt(ss_err / ss_ref) : std::sqrt(ss_err);
    if (bad == 0 && rel_l2 <= tol.l2) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << name << ": " << bad << " of " << got.numel()
                                         << " elements outside the bound, relative L2 error " << rel_l2
                                         << " (limit " << tol.l2 << "); worst " << worst;
}

// lse: -inf exactly where the reference row is empty, else |got - ref| <= tol * max(1, |ref|).
inline ::testing::AssertionResult lse_close(const TestTensor& got, const std::vector<double>& ref,
                                            const std::string& name, double tol = 2e-4) {
    if (std::int64_t(ref.size()) != got.numel())
        return ::testing::AssertionFailure() << name << ": reference has " << ref.size() << " elements, tensor "
                                             << got.numel();
    std::int64_t bad = 0, idx[4], row, head;
    std::string first;
    for (std::int64_t e = 0; e < got.numel(); ++e) {
        got.unravel(e, idx);
        const double g = got.get(got.offset(idx)), r = ref[std::size_t(lse_dense_index(got, idx, &row, &head))];
        const bool ok = std::isinf(r) ? (std::isinf(g) && g < 0) : (std::isfinite(g) && std::fabs(g - r) <= tol * std::max(1.0, std::fabs(r)));
        if (!ok && bad++ == 0) {
            std::ostringstream s;
            s << "row " << row << " head " << head << " got " << g << " expected " << r;
            first = s.str();
        }
    }
    if (bad == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << name << ": " << bad << " of " << got.numel() << " rows wrong; first "
                                         << first;
}

// After a download of a poisoned output: every byte outside the view (stride padding) still 0xFF,
// and the device guard bands intact. Catches stray writes, e.g. rows beyond a sequence.
inline ::testing::AssertionResult untouched_outside_view(const TestTensor& t, const std::string& name) {
    std::vector<char> covered(t.host.size() / std::size_t(t.elem_bytes()), 0);
    std::int64_t idx[4];
    for (std::int64_t e = 0; e < t.numel(); ++e) {
        t.unravel(e, idx);
        covered[std::size_t(t.offset(idx))] = 1;
    }
    for (std::size_t e = 0; e < covered.size(); ++e) {
        if (covered[e]) continue;
        for (int b = 0; b < t.elem_bytes(); ++b)
            if (t.host[e * std::size_t(t.elem_bytes()) + std::size_t(b)] != 0xFF)
                return ::testing::AssertionFailure() << name << ": padding element at offset " << e << " was written";
    }
    if (t.device.allocated() && !t.device.guards_intact())
        return ::testing::AssertionFailure() << name << ": a guard band around the device buffer was overwritten";
    return ::testing::AssertionSuccess();
}

// A tensor whose host copy still holds the 0xFF poison everywhere: nothing was written.
inline bool all_poisoned(const TestTensor& t) {
    return std::all_of(t.host.begin(), t.host.end(), [](unsigned char c) { return c == 0xFF; });
}

// Kernel test parameters: head dims and dtype.
struct Config {
    int dim_qk, dim_v;
    DType dtype;
};

// Every head-dim pair and dtype the CUDA kernels support.
inline std::vector<Config> all_configs() {
    std::vector<Config> c;
    for (auto [dqk, dv] : {std::pair{64, 64}, std::pair{128, 128}, std::pair{192, 128}, std::pair{256, 256}})
        for (DType dt : {DType::bf16, DType::fp16}) c.push_back({dqk, dv, dt});
    return c;
}

// A fixed-length problem of one config; the seed follows from the sizes (and `salt`, so that two suites
// can draw different inputs for the same sizes).
inline Problem config_problem(const Config& c, std::int64_t sq, std::int64_t sk, int hq, int hkv, int batch,
                              std::uint64_t salt) {
    Problem pr;
    pr.batch = batch;
    pr.seqlen_q = sq;
    pr.seqlen_k = sk;
    pr.heads_q = hq;
    pr.heads_kv = hkv;
    pr.dim_qk = c.dim_qk;
    pr.dim_v = c.dim_v;
    pr.dtype = c.dtype;
    pr.seed = std::uint64_t(sq * 1000003 + sk * 101 + hq * 7 + hkv + batch * 13 + pr.dim_qk) + salt;
    return pr;
}

inline std::string config_name(const ::testing::TestParamInfo<Config>& info) {
    return "d" + std::to_string(info.param.dim_qk) + "_" + std::to_string(info.param.dim_v) + "_" +
           dtype_name(info.param.dtype);
}

inline bool device_is_sm80_or_newer() {
    if (!cuda_available()) return false;
    int device = 0, major = 0;
    return cudaGetDevice(&device) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess && major >= 8;
}

inline bool device_is_sm90() {
    int device = 0, major = 0, minor = 0;
    return device_is_sm80_or_newer() && cudaGetDevice(&device) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
           cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
           major * 10 + minor == 90;
}

// The host copies of a test's cu_seqlens, for filling params directly (kernel-level calls).
inline api::HostSeqlens host_seqlens(const AttnTensors& t) {
    api::HostSeqlens host;
    if (t.cu_q.rank) {
        host.q = reinterpret_cast<const std::int32_t*>(t.cu_q.host.data());
        host.k = reinterpret_cast<const std::int32_t*>(t.cu_k.host.data());
    }
    return host;
}

#define CCATTN_REQUIRE_SM80()                                                                   \
    do {                                                                                        \
        CCATTN_REQUIRE_GPU();                                                                   \
        if (!device_is_sm80_or_newer()) GTEST_SKIP() << "needs compute capability 8.0 or newer"; \
    } while (0)

// Block-sparse lists built from a band (ccattn/block_sparse.h), and their device copies.
struct DeviceBlockSparse {
    BlockSparseLists host;
    TestTensor full_count, full_index, partial_count, partial_index;
};

inline TestTensor to_device(const Tensor& h) {
    TestTensor t = make_tensor(DType::int32, std::vector<std::int64_t>(h.shape, h.shape + h.rank));
    std::int64_t idx[4] = {0, 0, 0, 0};
    for (std::int64_t e = 0; e < t.numel(); ++e) {
        t.unravel(e, idx);
        std::int64_t src = 0;
        for (int d = 0; d < h.rank; ++d) src += idx[d] * h.stride[d];
        t.set(t.offset(idx), static_cast<const std::int32_t*>(h.data)[src]);
    }
    t.upload();
    return t;
}

// The block-sparse mask over uploaded lists; its band fields (the per-element predicate of partial
// tiles on CUDA) are the band's.
inline Mask device_block_sparse_mask(const Mask& band, std::int64_t tile_m, std::int64_t tile_n,
                                     const DeviceBlockSparse& lists) {
    Mask g = band;
    g.kind = MaskKind::block_sparse;
    g.block_sparse.tile_m = tile_m;
    g.block_sparse.tile_n = tile_n;
    g.block_sparse.full_count = lists.full_count.view(Device::cuda);
    g.block_sparse.full_index = lists.full_index.view(Device::cuda);
    g.block_sparse.partial_count = lists.partial_count.view(Device::cuda);
    g.block_sparse.partial_index = lists.partial_index.view(Device::cuda);
    return g;
}

// A block-sparse mask with device lists built from `band` for tiles of tile_m x tile_n; its band fields
// (the per-element predicate of partial tiles) are the band's.
inline Mask block_sparse_mask(const Mask& band, const Problem& pr, std::int64_t tile_m, std::int64_t tile_n,
                       DeviceBlockSparse& lists) {
    BlockSparseLists::Shape shape;
    shape.batch = pr.num_seqs();
    shape.seqlen_q = pr.seqlen_q;
    shape.seqlen_k = pr.seqlen_k;
    if (pr.varlen()) {
        shape.cu_seqlens_q = pr.cu_seqlens_q.data();
        shape.cu_seqlens_k = pr.cu_seqlens_k.data();
    }
    shape.tile_m = tile_m;
    shape.tile_n = tile_n;
    Status s = BlockSparseLists::from_band(band, shape, lists.host);
    if (!s.ok()) throw std::runtime_error("block-sparse lists: " + s.to_string());
    const BlockSparseMask v = lists.host.view();
    lists.full_count = to_device(v.full_count);
    lists.full_index = to_device(v.full_index);
    lists.partial_count = to_device(v.partial_count);
    lists.partial_index = to_device(v.partial_index);
    return device_block_sparse_mask(band, tile_m, tile_n, lists);
}

}  // namespace ccattn::test
