// Host conversions between float and the 16-bit storage types, round to nearest even.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace ccattn::core {

inline float bf16_to_float(std::uint16_t h) {
    std::uint32_t u = std::uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline std::uint16_t float_to_bf16(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return std::uint16_t(u >> 16);
}

inline float fp16_to_float(std::uint16_t h) {
    std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    std::uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    std::uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else {  // subnormal: value = man * 2^-24
        float f = std::ldexp(float(man), -24);
        std::memcpy(&u, &f, 4);
        u |= sign;
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline std::uint16_t float_to_fp16(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    std::uint16_t sign = std::uint16_t((u >> 16) & 0x8000u);
    std::uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return sign | 0x7e00u;  // NaN
    if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: infinity
    if (abs < 0x38800000u) {                        // below 2^-14: subnormal or zero
        float a;
        std::memcpy(&a, &abs, 4);
        return sign | std::uint16_t(std::nearbyint(a * 16777216.f));  // units of 2^-24, ties to even
    }
    std::uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u) - (112u << 23);
    return sign | std::uint16_t(r >> 13);
}

inline float to_float(std::uint16_t h, bool is_bf16) { return is_bf16 ? bf16_to_float(h) : fp16_to_float(h); }
inline std::uint16_t from_float(float f, bool is_bf16) { return is_bf16 ? float_to_bf16(f) : float_to_fp16(f); }

}  // namespace ccattn::core
