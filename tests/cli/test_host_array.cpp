// The CLI's host arrays (src/cli/host_array.h).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "cli/host_array.h"

namespace ccattn::test {
namespace {

// An empty int32 file (a cu_seqlens .npy of shape (0,)) gives an empty array; no copy from its
// (null) data.
TEST(HostArray, Int32FromNoValues) {
    const cli::HostArray a = cli::HostArray::from_int32({0}, {});
    EXPECT_EQ(a.numel(), 0);
    EXPECT_EQ(a.size_bytes(), 0u);
    EXPECT_NE(a.view(const_cast<unsigned char*>(a.bytes.data()), Device::cpu).data, nullptr);
}

TEST(HostArray, Int32Values) {
    const cli::HostArray a = cli::HostArray::from_int32({3}, {0, 4, 9});
    ASSERT_EQ(a.numel(), 3);
    EXPECT_EQ(a.int32_data()[2], 9);
}

}  // namespace
}  // namespace ccattn::test
