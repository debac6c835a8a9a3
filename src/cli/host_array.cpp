#include "cli/host_array.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <thread>

#include "core/dtype.h"

namespace ccattn::cli {

HostArray HostArray::zeros(DType dtype, std::vector<std::int64_t> shape) {
    HostArray a;
    a.dtype = dtype;
    a.shape = std::move(shape);
    a.bytes.assign(a.size_bytes() + std::size_t(dtype_size(dtype)), 0);
    return a;
}

HostArray HostArray::from_floats(DType dtype, std::vector<std::int64_t> shape, const std::vector<float>& values) {
    HostArray a = zeros(dtype, std::move(shape));
    for (std::size_t e = 0; e < std::size_t(a.numel()); ++e) {
        if (dtype == DType::fp32) {
            std::memcpy(&a.bytes[4 * e], &values[e], 4);
        } else {
            const std::uint16_t h = core::from_float(values[e], dtype == DType::bf16);
            std::memcpy(&a.bytes[2 * e], &h, 2);
        }
    }
    return a;
}

namespace {

std::uint64_t splitmix64(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

}  // namespace

HostArray HostArray::random_normal(DType dtype, std::vector<std::int64_t> shape, std::uint64_t seed) {
    HostArray a = zeros(dtype, std::move(shape));
    const std::int64_t n = a.numel();
    constexpr std::int64_t kChunk = std::int64_t(1) << 20;  // each chunk has its own stream: same values for any thread count
    const std::int64_t chunks = (n + kChunk - 1) / kChunk;
    std::atomic<std::int64_t> next{0};
    auto work = [&] {
        for (std::int64_t c; (c = next.fetch_add(1)) < chunks;) {
            std::uint64_t state = seed * 0x2545f4914f6cdd1dull + std::uint64_t(c);
            for (std::int64_t e = c * kChunk; e < std::min(n, (c + 1) * kChunk); e += 2) {
                // Box-Muller: two normals from two uniforms in (0, 1].
                const double u1 = (double(splitmix64(state) >> 11) + 1.0) * 0x1p-53;
                const double u2 = double(splitmix64(state) >> 11) * 0x1p-53;
                const double r = std::sqrt(-2.0 * std::log(u1));
                const float pair[2] = {float(r * std::cos(6.283185307179586 * u2)), float(r * std::sin(6.283185307179586 * u2))};
                for (std::int64_t k = 0; k < 2 && e + k < n; ++k) {
                    if (dtype == DType::fp32) {
                        std::memcpy(&a.bytes[std::size_t(4 * (e + k))], &pair[k], 4);
                    } else {
                        const std::uint16_t h = core::from_float(pair[k], dtype == DType::bf16);
                        std::memcpy(&a.bytes[std::size_t(2 * (e + k))], &h, 2);
                    }
                }
            }
        }
    };
    std::vector<std::thread> threads(std::max(1u, std::thread::hardware_concurrency()) - 1);
    for (auto& t : threads) t = std::thread(work);
    work();
    for (auto& t : threads) t.join();
    return a;
}

HostArray HostArray::from_int32(std::vector<std::int64_t> shape, const std::vector<std::int32_t>& values) {
    HostArray a = zeros(DType::int32, std::move(shape));
    if (!values.empty()) std::memcpy(a.bytes.data(), values.data(), a.size_bytes());  // no copy from null
    return a;
}

std::int64_t HostArray::numel() const {
    std::int64_t n = 1;
    for (std::int64_t d : shape) n *= d;
    return n;
}

float HostArray::at(std::int64_t e) const {
    if (dtype == DType::fp32) {
        float f;
        std::memcpy(&f, &bytes[std::size_t(4 * e)], 4);
        return f;
    }
    std::uint16_t h;
    std::memcpy(&h, &bytes[std::size_t(2 * e)], 2);
    return core::to_float(h, dtype == DType::bf16);
}

std::vector<float> HostArray::to_floats() const {
    std::vector<float> out(static_cast<std::size_t>(numel()));
    for (std::size_t e = 0; e < out.size(); ++e) out[e] = at(std::int64_t(e));
    return out;
}

Tensor HostArray::view(void* data, Device device) const {
    Tensor t;
    t.data = data;
    t.dtype = dtype;
    t.device = device;
    t.rank = int(shape.size());
    std::int64_t stride = 1;
    for (int d = t.rank - 1; d >= 0; --d) {
        t.shape[d] = shape[std::size_t(d)];
        t.stride[d] = stride;
        stride *= shape[std::size_t(d)];
    }
    return t;
}

Outputs Outputs::shaped_for(const Inputs& in) {
    const std::vector<std::int64_t>& q = in.q.shape;
    const DType dt = in.q.dtype;
    std::vector<std::int64_t> out = q;
    out.back() = in.v.shape.back();
    const bool fixed = q.size() == 4;
    Outputs o;
    o.out = HostArray::zeros(dt, out);
    o.lse = HostArray::zeros(
        DType::fp32, fixed ? std::vector<std::int64_t>{q[0], q[2], q[1]} : std::vector<std::int64_t>{q[1], q[0]});
    if (in.has_dout()) {
        o.dq = HostArray::zeros(dt, q);
        o.dk = HostArray::zeros(dt, in.k.shape);
        o.dv = HostArray::zeros(dt, in.v.shape);
    }
    return o;
}

}  // namespace ccattn::cli
