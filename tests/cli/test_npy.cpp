// The CLI's .npy writer and reader (src/cli/npy.h) on their own.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/npy.h"

namespace ccattn::test {
namespace {

TEST(Npy, WriteThenReadRoundTrips) {
    const std::string path =
        (std::filesystem::temp_directory_path() / ("ccattn_npy_" + std::to_string(getpid()) + ".npy")).string();
    const std::vector<float> x = {1.5f, -2.f, 0.f, 3.25f, 7.f, -0.5f};
    ASSERT_TRUE(cli::write_npy(path, {2, 3}, x).ok());
    cli::NpyArray a;
    const Status s = cli::read_npy(path, "--x", a);
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_EQ(a.shape, (std::vector<std::int64_t>{2, 3}));
    EXPECT_EQ(a.to_float(), x);
    std::filesystem::remove(path);
}

// A write that fails only when the buffered bytes are flushed (a small file to a full device) is an
// error, not a success.
TEST(Npy, WriteFailureAtFlushIsReported) {
    const Status s = cli::write_npy("/dev/full", {2}, {1.f, 2.f});
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message.find("/dev/full"), std::string::npos) << s.message;
}

}  // namespace
}  // namespace ccattn::test
