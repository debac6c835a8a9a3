// The CLI's .npy writer and reader (src/cli/npy.h) on their own.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
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

// A file of `header` (the .npy dict) and `data_bytes` zero bytes, at a fresh temporary path.
std::string raw_npy(const std::string& header, std::size_t data_bytes) {
    const std::string path =
        (std::filesystem::temp_directory_path() / ("ccattn_npy_raw_" + std::to_string(getpid()) + ".npy")).string();
    std::string text = header;
    text += std::string((64 - (10 + text.size() + 1) % 64) % 64, ' ') + "\n";
    std::ofstream out(path, std::ios::binary);
    out.write("\x93NUMPY\x01\x00", 8);
    const char len[2] = {char(text.size() & 0xff), char(text.size() >> 8)};
    out.write(len, 2);
    out << text << std::string(data_bytes, '\0');
    return path;
}

// Extents whose product passes 2^63 (each within the 2^40 an extent may have) are too large, without
// overflowing on the way; with a zero extent the array is empty, whatever the others are.
TEST(Npy, HugeExtents) {
    const std::string t = "1099511627776";  // 2^40
    cli::NpyArray a;
    std::string path = raw_npy("{'descr': '<i8', 'fortran_order': False, 'shape': (" + t + ", " + t + ", " + t + ", " + t + "), }", 24);
    Status s = cli::read_npy(path, "--band-lo", a);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message.find("too large"), std::string::npos) << s.message;
    path = raw_npy("{'descr': '<i8', 'fortran_order': False, 'shape': (" + t + ", 2, 3), }", 48);
    s = cli::read_npy(path, "--band-lo", a);
    EXPECT_NE(s.message.find("too large"), std::string::npos) << s.message;
    path = raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (" + t + ", " + t + ", " + t + ", 0), }", 0);
    s = cli::read_npy(path, "--q", a);
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_EQ(a.numel(), 0);
    EXPECT_TRUE(a.to_float().empty());
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
