// NumPy .npy files (format versions 1 to 3): little-endian, C-order float32, float16, int32 and
// int64 arrays in, float32 arrays out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ccattn/status.h"

namespace ccattn::cli {

enum class NpyType { float32, float16, int32, int64 };

struct NpyArray {
    NpyType type = NpyType::float32;
    std::vector<std::int64_t> shape;
    std::vector<unsigned char> bytes;  // raw little-endian elements, C order

    std::int64_t numel() const;
    // Elements as float (float32 or float16 arrays).
    std::vector<float> to_float() const;
    // Elements as int32 (int32 arrays).
    std::vector<std::int32_t> to_int32() const;
    // Elements as int64 (int32 or int64 arrays).
    std::vector<std::int64_t> to_int64() const;
};

// Reads `path`; errors name `what` (the option the file came from).
Status read_npy(const std::string& path, const std::string& what, NpyArray& out);

// Writes a float32 array of the given shape; checked after the file is closed. Errors carry no
// argument name (the caller knows which option the path came from).
Status write_npy(const std::string& path, const std::vector<std::int64_t>& shape, const std::vector<float>& data);

}  // namespace ccattn::cli
