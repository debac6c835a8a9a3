// The CPU backend's vector unit: one native float vector (GCC/Clang vector extension, so the
// micro-kernels keep their accumulators in registers on any x86/ARM target) and a vectorizable exp2.
#pragma once

#include <cstdint>
#include <cstring>

namespace ccattn::cpu {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif

using vfloat = float __attribute__((vector_size(kLanes * sizeof(float))));

inline vfloat load(const float* p) {
    vfloat v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
inline void store(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }

constexpr int round_up(int n, int m) { return (n + m - 1) / m * m; }

using vint = std::int32_t __attribute__((vector_size(kLanes * sizeof(std::int32_t))));

inline vfloat splat(float x) { return vfloat{} + x; }

inline vfloat vmax(vfloat a, vfloat b) { return a > b ? a : b; }

// 2^x per lane to about 1e-7 relative, in plain vector arithmetic (std::exp2 does not vectorize);
// exactly 0 below -126, so masked scores (-inf) give probability 0 bit for bit.
inline vfloat exp2_approx(vfloat x) {
    const vfloat lo = splat(-126.f), hi = splat(127.f);
    vfloat xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    // n = round(xc) by adding 1.5 * 2^23 (exact for |x| < 2^22), leaving f = xc - n in [-0.5, 0.5];
    // the integer n sits in the low mantissa bits of t.
    const vfloat shifter = splat(12582912.f);
    const vfloat t = xc + shifter;
    const vfloat f = xc - (t - shifter);
    const vint n = (vint)t - 0x4b400000;
    // 2^f = e^(f ln2): Taylor to degree 7 (coefficients ln2^k / k!), error (0.5 ln2)^8 / 8! ~ 5e-9.
    const vfloat poly =
        1.f + f * (0.6931471805599453f +
                   f * (0.2402265069591007f +
                        f * (0.055504108664821576f +
                             f * (0.009618129107628477f +
                                  f * (0.0013333558146428441f + f * (1.5403530393381606e-4f + f * 1.5252733804059838e-5f))))));
    const vfloat scale = (vfloat)((n + 127) << 23);
    return x < lo ? vfloat{} : poly * scale;
}

}  // namespace ccattn::cpu
