// ccattn public API: a non-owning view of a strided tensor on the host or a CUDA device.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace ccattn {

enum class DType : std::int8_t { bf16, fp16, fp32, int32, int64 };
enum class Device : std::int8_t { cpu, cuda };

constexpr int dtype_size(DType t) {
    return t == DType::bf16 || t == DType::fp16 ? 2 : t == DType::int64 ? 8 : 4;
}
const char* dtype_name(DType t);

// Up to 4 dimensions; strides are in elements and 64-bit. A view with data == nullptr is "absent".
struct Tensor {
    static constexpr int kMaxRank = 4;
    void* data = nullptr;
    DType dtype = DType::bf16;
    int rank = 0;
    std::int64_t shape[kMaxRank] = {0, 0, 0, 0};
    std::int64_t stride[kMaxRank] = {0, 0, 0, 0};
    Device device = Device::cpu;

    bool defined() const { return data != nullptr; }
    std::int64_t numel() const {
        if (rank < 0 || rank > kMaxRank) return 0;  // not a view any call accepts
        std::int64_t n = 1;
        for (int d = 0; d < rank; ++d) n *= shape[d];
        return n;
    }
    // A row-major contiguous view. More than kMaxRank dimensions give a view of that rank with no
    // sizes or strides stored, which every call rejects by its rank.
    static Tensor contiguous(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                             Device device = Device::cpu) {
        Tensor t;
        t.data = data;
        t.dtype = dtype;
        t.device = device;
        t.rank = int(shape.size());
        if (t.rank > kMaxRank) return t;
        int d = 0;
        for (std::int64_t s : shape) t.shape[d++] = s;
        std::int64_t st = 1;
        for (int d = t.rank - 1; d >= 0; --d) {
            t.stride[d] = st;
            st *= t.shape[d];
        }
        return t;
    }
};

}  // namespace ccattn
