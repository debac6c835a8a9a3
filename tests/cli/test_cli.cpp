// The ccattn command line tool end to end: .npy inputs written here, `ccattn run` outputs compared
// with the fp64 reference, `check` and `bench` exit codes and output, bad input rejected.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "api/validate.h"
#include "cli/npy.h"
#include "core/dtype.h"
#include "cpu/reference.h"

namespace ccattn::test {
namespace {

namespace fs = std::filesystem;
using Shape = std::vector<std::int64_t>;

std::int64_t numel(const Shape& s) {
    std::int64_t n = 1;
    for (std::int64_t d : s) n *= d;
    return n;
}

// A .npy version 1.0 file written by hand (independent of the CLI's writer).
void write_npy(const fs::path& path, const std::string& descr, const Shape& shape, const void* data,
               std::size_t bytes) {
    std::string dims;
    for (std::size_t d = 0; d < shape.size(); ++d) dims += (d ? ", " : "") + std::to_string(shape[d]);
    if (shape.size() == 1) dims += ",";
    std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
    header += std::string(63 - (10 + header.size()) % 64, ' ') + "\n";
    std::ofstream f(path, std::ios::binary);
    f.write("\x93NUMPY\x01\x00", 8);
    const unsigned char len[2] = {(unsigned char)(header.size() & 0xff), (unsigned char)(header.size() >> 8)};
    f.write(reinterpret_cast<const char*>(len), 2);
    f << header;
    f.write(static_cast<const char*>(data), std::streamsize(bytes));
}

void write_f32(const fs::path& p, const Shape& s, const std::vector<float>& x) {
    write_npy(p, "<f4", s, x.data(), 4 * x.size());
}
void write_f16(const fs::path& p, const Shape& s, const std::vector<float>& x) {
    std::vector<std::uint16_t> h;
    for (float v : x) h.push_back(core::float_to_fp16(v));
    write_npy(p, "<f2", s, h.data(), 2 * h.size());
}
void write_i32(const fs::path& p, const std::vector<std::int32_t>& x) {
    write_npy(p, "<i4", {std::int64_t(x.size())}, x.data(), 4 * x.size());
}

std::vector<float> random_floats(std::int64_t n, std::mt19937_64& rng) {
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<float> x(static_cast<std::size_t>(n));
    for (float& v : x) v = normal(rng);
    return x;
}

struct Result {
    int code = -1;
    std::string out, err;
};

class Cli : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("ccattn_cli_test_" + std::to_string(getpid()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    Result ccattn(const std::string& args) {
        const fs::path out = dir_ / "stdout.txt", err = dir_ / "stderr.txt";
        // A call that hangs (an endless input) fails the test instead of stalling the suite.
        const std::string cmd = "timeout 120 " + std::string(CCATTN_CLI_PATH) + " " + args + " > " + out.string() +
                                " 2> " + err.string();
        const int status = std::system(cmd.c_str());
        Result r;
        r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        r.out = slurp(out);
        r.err = slurp(err);
        return r;
    }
    static std::string slurp(const fs::path& p) {
        std::ifstream f(p);
        std::stringstream s;
        s << f.rdbuf();
        return s.str();
    }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    fs::path dir_;
};

// A bf16 host tensor rounded the way `ccattn run --dtype bf16` rounds its inputs.
struct Bf16 {
    std::vector<std::uint16_t> data;
    Tensor t;
    Bf16(const std::vector<float>& x, const Shape& shape) {
        for (float v : x) data.push_back(core::float_to_bf16(v));
        data.push_back(0);  // non-null when empty
        t.data = data.data();
        t.rank = int(shape.size());
        std::int64_t stride = 1;
        for (int d = t.rank - 1; d >= 0; --d) {
            t.shape[d] = shape[std::size_t(d)];
            t.stride[d] = stride;
            stride *= shape[std::size_t(d)];
        }
    }
};

std::vector<float> read_floats(const std::string& path, const Shape& expected_shape) {
    cli::NpyArray a;
    const Status s = cli::read_npy(path, "output", a);
    EXPECT_TRUE(s.ok()) << s.to_string();
    EXPECT_EQ(a.shape, expected_shape) << path;
    EXPECT_TRUE(a.type == cli::NpyType::float32) << path;
    return a.to_float();
}

// ||x - ref|| / ||ref||
double relative_error(const std::vector<float>& x, const std::vector<double>& ref) {
    double d = 0, r = 0;
    for (std::size_t e = 0; e < ref.size(); ++e) {
        d += (x[e] - ref[e]) * (x[e] - ref[e]);
        r += ref[e] * ref[e];
    }
    return std::sqrt(d / r);
}

TEST_F(Cli, RunMatchesTheReference) {
    std::mt19937_64 rng(std::random_device{}());
    const Shape qs = {2, 37, 4, 24}, ks = {2, 11, 2, 24}, vs = {2, 11, 2, 16}, os = {2, 37, 4, 16};
    const auto q = random_floats(numel(qs), rng), k = random_floats(numel(ks), rng), v = random_floats(numel(vs), rng),
               dout = random_floats(numel(os), rng);
    write_f32(path("q.npy"), qs, q);
    write_f16(path("k.npy"), ks, k);  // float16 input: rounded to bf16 like the others
    write_f32(path("v.npy"), vs, v);
    write_f32(path("do.npy"), os, dout);
    const Result r =
        ccattn("run --q " + path("q.npy") + " --k " + path("k.npy") + " --v " + path("v.npy") + " --dout " +
               path("do.npy") + " --causal --compress-factor 3 --diag-offset 2 --threads 2 --out-dir " + path("out"));
    ASSERT_EQ(r.code, 0) << r.err;

    std::vector<float> k16;
    for (float x : k) k16.push_back(core::fp16_to_float(core::float_to_fp16(x)));
    const Bf16 tq(q, qs), tk(k16, ks), tv(v, vs), tdo(dout, os);
    const std::vector<float> out = read_floats(path("out/out.npy"), os),
                             lse = read_floats(path("out/lse.npy"), {2, 4, 37});
    const std::vector<float> dq = read_floats(path("out/dq.npy"), qs), dk = read_floats(path("out/dk.npy"), ks),
                             dv = read_floats(path("out/dv.npy"), vs);
    // The reference reads q, k, v, dout; out and lse only need valid views.
    const Bf16 tout(out, os), tdq(dq, qs), tdk(dk, ks), tdv(dv, vs);
    std::vector<float> lse_copy = lse;
    BackwardArgs a;
    a.q = tq.t;
    a.k = tk.t;
    a.v = tv.t;
    a.dout = tdo.t;
    a.out = tout.t;
    a.dq = tdq.t;
    a.dk = tdk.t;
    a.dv = tdv.t;
    a.lse = Tensor::contiguous(lse_copy.data(), DType::fp32, {2, 4, 37});
    a.mask = Mask::band(true, 3, 2);
    core::AttnParams p;
    const Status s = api::fill_backward_params(a, {}, p);
    ASSERT_TRUE(s.ok()) << s.to_string();
    cpu::Reference ref = cpu::reference_forward(p);
    cpu::reference_backward(p, ref);

    EXPECT_LT(relative_error(out, ref.out), 1e-2);
    EXPECT_LT(relative_error(dq, ref.dq), 1e-2);
    EXPECT_LT(relative_error(dk, ref.dk), 1e-2);
    EXPECT_LT(relative_error(dv, ref.dv), 1e-2);
    for (std::int64_t b = 0; b < 2; ++b)
        for (std::int64_t h = 0; h < 4; ++h)
            for (std::int64_t i = 0; i < 37; ++i)
                EXPECT_NEAR(lse[std::size_t((b * 4 + h) * 37 + i)], ref.lse[std::size_t((b * 37 + i) * 4 + h)], 1e-3);
}

// --deterministic reaches BackwardArgs through run, check and bench (whose CSV rows name it); the CPU
// backward is deterministic anyway, so run's gradients are the same bits with and without it.
TEST_F(Cli, DeterministicBackward) {
    std::mt19937_64 rng(std::random_device{}());
    const Shape qs = {1, 45, 2, 16}, ks = {1, 12, 1, 16};
    for (const char* name : {"q", "do"}) write_f32(path(std::string(name) + ".npy"), qs, random_floats(numel(qs), rng));
    write_f32(path("k.npy"), ks, random_floats(numel(ks), rng));
    const std::string run = "run --q " + path("q.npy") + " --k " + path("k.npy") + " --v " + path("k.npy") + " --dout " +
                            path("do.npy") + " --causal --compress-factor 4 --threads 2 --out-dir ";
    ASSERT_EQ(ccattn(run + path("plain")).code, 0);
    const Result r = ccattn(run + path("ordered") + " --deterministic");
    ASSERT_EQ(r.code, 0) << r.err;
    for (const char* grad : {"dq.npy", "dk.npy", "dv.npy"})
        EXPECT_EQ(slurp(path("plain/") + grad), slurp(path("ordered/") + grad)) << grad;

    const std::string shape = " --seqlen-q 70 --seqlen-k 20 --heads-q 4 --heads-kv 2 --dim-qk 32 --dim-v 16 --threads 2";
    const Result c = ccattn("check" + shape + " --bwd --causal --compress-factor 4 --deterministic");
    EXPECT_EQ(c.code, 0) << c.out << c.err;
    EXPECT_NE(c.out.find("deterministic backward"), std::string::npos) << c.out;
    const Result b = ccattn("bench" + shape + " --bwd --iters 1 --warmup 0 --deterministic --csv " + path("d.csv"));
    EXPECT_EQ(b.code, 0) << b.out << b.err;
    const std::string csv = slurp(path("d.csv"));
    EXPECT_NE(csv.find(",backward_deterministic,cpu,native,"), std::string::npos) << csv;
    EXPECT_EQ(ccattn("check" + shape + " --deterministic=1").code, 2);  // a flag
}

TEST_F(Cli, RunVarlenWithAnEmptySequence) {
    std::mt19937_64 rng(std::random_device{}());
    const std::vector<std::int32_t> cu_q = {0, 9, 9, 30}, cu_k = {0, 0, 4, 12};  // no keys, no queries, both
    const Shape qs = {30, 2, 8}, ks = {12, 1, 8};
    write_f32(path("q.npy"), qs, random_floats(numel(qs), rng));
    write_f32(path("k.npy"), ks, random_floats(numel(ks), rng));
    write_f32(path("v.npy"), ks, random_floats(numel(ks), rng));
    write_i32(path("cq.npy"), cu_q);
    write_i32(path("ck.npy"), cu_k);
    const Result r = ccattn("run --q " + path("q.npy") + " --k " + path("k.npy") + " --v " + path("v.npy") +
                            " --cu-seqlens-q " + path("cq.npy") + " --cu-seqlens-k " + path("ck.npy") +
                            " --causal --compress-factor 2 --dtype fp16 --out-dir " + path("out"));
    ASSERT_EQ(r.code, 0) << r.err;
    const std::vector<float> out = read_floats(path("out/out.npy"), qs),
                             lse = read_floats(path("out/lse.npy"), {2, 30});
    for (int h = 0; h < 2; ++h)
        for (int row = 0; row < 30; ++row) {
            const float l = lse[std::size_t(h * 30 + row)];
            if (row < 9) {  // sequence 0 has no keys: empty rows
                EXPECT_TRUE(std::isinf(l) && l < 0) << row;
                for (int e = 0; e < 8; ++e) EXPECT_EQ(out[std::size_t((row * 2 + h) * 8 + e)], 0.f);
            } else {
                EXPECT_TRUE(std::isfinite(l)) << row;
            }
        }
}

TEST_F(Cli, RunRejectsBadInputWithoutWriting) {
    std::mt19937_64 rng(1);
    const Shape qs = {1, 5, 2, 8}, ks = {1, 6, 2, 8};
    write_f32(path("q.npy"), qs, random_floats(numel(qs), rng));
    write_f32(path("k.npy"), ks, random_floats(numel(ks), rng));
    write_f32(path("k4.npy"), {1, 6, 2, 4}, random_floats(48, rng));
    const std::vector<double> wide(80, 1.0);
    write_npy(path("q64.npy"), "<f8", qs, wide.data(), 8 * wide.size());
    write_i32(path("cq.npy"), {0, 3, 2});
    write_i32(path("empty.npy"), {});
    {
        std::ofstream junk(path("junk.npy"));
        junk << "not a numpy file";
    }
    const std::string kv = " --v " + path("k.npy") + " --out-dir " + path("out");
    struct Bad {
        std::string args, message;
    };
    const Bad cases[] = {
        {"--q " + path("q.npy") + " --k " + path("k4.npy") + kv, "argument '--k'"},
        {"--q " + path("q64.npy") + " --k " + path("k.npy") + kv, "'<f8'"},
        {"--q " + path("junk.npy") + " --k " + path("k.npy") + kv, "not a .npy file"},
        {"--q " + path("missing.npy") + " --k " + path("k.npy") + kv, "cannot open"},
        {"--q " + path("q.npy") + " --k " + path("k.npy") + kv + " --cu-seqlens-q " + path("cq.npy"),
         "argument '--cu-seqlens-k'"},
        {"--q " + path("q.npy") + " --k " + path("k.npy") + kv + " --cu-seqlens-q " + path("empty.npy") +
             " --cu-seqlens-k " + path("empty.npy"),
         "argument '--cu-seqlens-q'"},
        {"--q " + path("q.npy") + " --k " + path("k.npy") + kv + " --window-left -1", "--window-left"},
        {"--q " + path("q.npy") + " --k " + path("k.npy") + kv + " --dtype fp8", "--dtype"},
        {"--q " + path("q.npy") + " --k " + path("k.npy") + " --v " + path("k.npy"), "--out-dir"},
        {"--q " + path("q.npy") + " --k " + path("k.npy") + kv + " --no-such-option", "--no-such-option"},
    };
    for (const Bad& c : cases) {
        const Result r = ccattn("run " + c.args);
        EXPECT_EQ(r.code, 2) << c.args << "\n" << r.out << r.err;
        EXPECT_NE(r.err.find(c.message), std::string::npos) << "stderr: " << r.err;
        EXPECT_FALSE(fs::exists(path("out/out.npy"))) << c.args;
    }
}

// Paths that are no .npy file fail at once, naming the option: a directory (was an uncaught
// exception), endless devices (were read whole before the magic was checked), headers that promise
// more or less than the file holds, or an absurd header length.
TEST_F(Cli, RunRejectsInputsThatAreNoNpyFile) {
    std::mt19937_64 rng(1);
    const Shape ks = {1, 6, 2, 8};
    write_f32(path("k.npy"), ks, random_floats(numel(ks), rng));
    fs::create_directories(path("adir"));
    const std::vector<float> few(4, 1.f);
    write_npy(path("short.npy"), "<f4", {1 << 20, 1 << 10, 4, 64}, few.data(), 16);
    write_npy(path("long.npy"), "<f4", {1, 1, 1, 2}, few.data(), 16);
    {
        std::ofstream f(path("header.npy"), std::ios::binary);
        f.write("\x93NUMPY\x02\x00\xf0\xff\xff\xff{'descr'", 18);
    }
    struct Bad {
        std::string q, message;
    };
    const Bad cases[] = {
        {path("adir"), "is a directory"},
        {"/dev/urandom", "not a .npy file"},
        {"/dev/zero", "not a .npy file"},
        {path("short.npy"), "holds 16 data bytes"},
        {path("long.npy"), "holds more than the 8 data bytes"},
        {path("header.npy"), "header of 4294967280 bytes"},
    };
    for (const Bad& c : cases) {
        const Result r = ccattn("run --q " + c.q + " --k " + path("k.npy") + " --v " + path("k.npy") + " --out-dir " +
                                path("out"));
        EXPECT_EQ(r.code, 2) << c.q << "\n" << r.out << r.err;
        EXPECT_NE(r.err.find("'--q'"), std::string::npos) << "stderr: " << r.err;
        EXPECT_NE(r.err.find(c.message), std::string::npos) << "stderr: " << r.err;
        EXPECT_FALSE(fs::exists(path("out"))) << c.q;
    }
}

// A byte order or dtype the reader does not take: the hint names a dtype the option accepts.
TEST_F(Cli, RunHintsAnAcceptedDtype) {
    std::mt19937_64 rng(1);
    const Shape qs = {1, 5, 2, 8}, ks = {1, 6, 2, 8};
    write_f32(path("q.npy"), qs, random_floats(numel(qs), rng));
    write_f32(path("k.npy"), ks, random_floats(numel(ks), rng));
    const std::vector<std::int64_t> wide(80, 0);
    write_npy(path("q_be.npy"), ">f4", qs, wide.data(), 4 * 80);
    write_npy(path("q_be16.npy"), ">f2", qs, wide.data(), 2 * 80);
    write_npy(path("q_f8.npy"), ">f8", qs, wide.data(), 8 * 80);
    write_npy(path("cq_be.npy"), ">i4", {3}, wide.data(), 12);
    write_npy(path("cq_i8.npy"), "<i8", {3}, wide.data(), 24);
    const std::string kv = " --k " + path("k.npy") + " --v " + path("k.npy") + " --out-dir " + path("out");
    struct Bad {
        std::string args, option, hint;
    };
    const Bad cases[] = {
        {"--q " + path("q_be.npy") + kv, "--q", "astype('<f4')"},
        {"--q " + path("q_be16.npy") + kv, "--q", "astype('<f2')"},
        {"--q " + path("q_f8.npy") + kv, "--q", "astype('<f4')"},
        {"--q " + path("q.npy") + kv + " --cu-seqlens-q " + path("cq_be.npy"), "--cu-seqlens-q", "astype('<i4')"},
        {"--q " + path("q.npy") + kv + " --cu-seqlens-q " + path("cq_i8.npy"), "--cu-seqlens-q", "astype('<i4')"},
    };
    for (const Bad& c : cases) {
        const Result r = ccattn("run " + c.args);
        EXPECT_EQ(r.code, 2) << c.args << "\n" << r.out << r.err;
        EXPECT_NE(r.err.find("'" + c.option + "'"), std::string::npos) << "stderr: " << r.err;
        EXPECT_NE(r.err.find(c.hint), std::string::npos) << "stderr: " << r.err;
    }
}

// Outputs are all written or none: a write that fails (here past a file size limit, the way a full
// disk fails at flush) or an output path that is a directory leaves no new file behind and names
// --out-dir; outputs of an earlier run stay as they were.
TEST_F(Cli, RunWritesAllOutputsOrNone) {
    std::mt19937_64 rng(1);
    const Shape qs = {1, 64, 2, 8}, ks = {1, 6, 2, 8};
    write_f32(path("q.npy"), qs, random_floats(numel(qs), rng));
    write_f32(path("k.npy"), ks, random_floats(numel(ks), rng));
    write_f32(path("do.npy"), qs, random_floats(numel(qs), rng));
    const std::string args = "run --q " + path("q.npy") + " --k " + path("k.npy") + " --v " + path("k.npy");
    auto new_files = [&](const std::string& dir) {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(path(dir)))
            if (!fs::is_directory(e.path())) names.push_back(e.path().filename().string());
        return names;
    };

    // out.npy (4 KiB) is beyond a 1 KiB file size limit; the signal the limit raises is ignored, so
    // the write fails with EFBIG.
    fs::create_directories(path("limited"));
    const std::string cli = std::string(CCATTN_CLI_PATH);
    const std::string cmd = "bash -c \"trap '' XFSZ; ulimit -f 1; timeout 120 " + cli + " " + args + " --out-dir " +
                            path("limited") + "\" > " + path("limited.txt") + " 2>&1";
    const int status = std::system(cmd.c_str());
    const std::string text = slurp(path("limited.txt"));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << text;
    EXPECT_NE(text.find("argument '--out-dir'"), std::string::npos) << text;
    EXPECT_TRUE(new_files("limited").empty()) << text;

    // lse.npy, or dv.npy with --dout, is a directory: nothing is written, an earlier out.npy stays.
    for (const char* blocked : {"lse.npy", "dv.npy"}) {
        fs::remove_all(path("out"));
        fs::create_directories(path("out") + "/" + blocked);
        {
            std::ofstream earlier(path("out/out.npy"));
            earlier << "earlier";
        }
        const Result r = ccattn(args + " --dout " + path("do.npy") + " --out-dir " + path("out"));
        EXPECT_EQ(r.code, 2) << blocked << "\n" << r.out << r.err;
        EXPECT_NE(r.err.find("argument '--out-dir'"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find(blocked), std::string::npos) << r.err;
        EXPECT_EQ(new_files("out"), std::vector<std::string>{"out.npy"}) << blocked;
        EXPECT_EQ(slurp(path("out/out.npy")), "earlier");
    }
}

// An output name that is a link (here to /dev/full) is replaced by the written file, which holds
// what the run printed it wrote.
TEST_F(Cli, RunReplacesALinkedOutput) {
    std::mt19937_64 rng(1);
    const Shape qs = {1, 5, 2, 8}, ks = {1, 6, 2, 8};
    write_f32(path("q.npy"), qs, random_floats(numel(qs), rng));
    write_f32(path("k.npy"), ks, random_floats(numel(ks), rng));
    fs::create_directories(path("out"));
    fs::create_symlink("/dev/full", path("out/out.npy"));
    const Result r = ccattn("run --q " + path("q.npy") + " --k " + path("k.npy") + " --v " + path("k.npy") +
                            " --out-dir " + path("out"));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(path("out/out.npy"))));
    EXPECT_EQ(read_floats(path("out/out.npy"), qs).size(), std::size_t(numel(qs)));
}

TEST_F(Cli, CheckPassesAndExitsZero) {
    const std::string shape =
        " --seqlen-q 70 --seqlen-k 20 --heads-q 4 --heads-kv 2 --dim-qk 32 --dim-v 16 --threads 2";
    for (const char* extra :
         {" --bwd --causal --compress-factor 4 --varlen 3",
          " --bwd --causal --compress-factor 4 --mask block_sparse --sparse-tile-m 16 --sparse-tile-n 8",
          " --causal --compress-factor 2 --diag-offset -1 --window-left 3 --mask mask_mod --dtype fp16",
          " --batch 2 --causal --kv-cache 16 --num-splits 3", " --kv-cache 0 --window-left 5 --causal"}) {
        const Result r = ccattn("check" + shape + extra);
        EXPECT_EQ(r.code, 0) << extra << "\n" << r.out << r.err;
        EXPECT_NE(r.out.find("PASS"), std::string::npos) << r.out;
        EXPECT_NE(r.out.find("out "), std::string::npos) << r.out;
    }
}

TEST_F(Cli, CheckRejectsBadOptions) {
    const Result heads = ccattn("check --heads-q 4 --heads-kv 3");
    EXPECT_EQ(heads.code, 2);
    EXPECT_NE(heads.err.find("argument '--heads-kv'"), std::string::npos) << heads.err;
    const Result value = ccattn("check --seqlen-q many");
    EXPECT_EQ(value.code, 2);
    EXPECT_NE(value.err.find("--seqlen-q"), std::string::npos) << value.err;
    const Result cache = ccattn("check --backend cpu --kv-cache 16 --bwd");
    EXPECT_EQ(cache.code, 2);
    EXPECT_NE(cache.err.find("argument '--kv-cache'"), std::string::npos) << cache.err;
}

// Numbers out of their range or malformed are rejected by option name, never by an exception
// (--documents used to abort on std::stoll's out_of_range and to drop a third ':' field).
TEST_F(Cli, NumbersAreCheckedByOptionName) {
    const std::string small = "--seqlen-q 8 --heads-q 1 --heads-kv 1 --dim-qk 8 --dim-v 8 ";
    struct Bad {
        std::string args, option, message;
    };
    const Bad cases[] = {
        {"check --backend cpu --documents 99999999999999999999:1", "--documents", "is above 2147483647"},
        {"bench --backend cpu --documents 1:99999999999999999999", "--documents", "is above 2147483647"},
        {"check --backend cpu --documents 4:2:3,5:9:9", "--documents", "expected SQ:SK"},
        {"check --backend cpu --documents 4:-2", "--documents", "expected SQ:SK"},
        {"check --backend cpu --documents 4:2,", "--documents", "expected SQ:SK"},
        {"check --backend cpu --documents 2147483647:1,1:1", "--documents", "total length"},
        {"check --backend cpu --seqlen-k 99999999999999999999", "--seqlen-k", "must be in [0, 2147483647]"},
        {"check --backend cpu --seed -1", "--seed", "must be in [0, "},
        {"check --backend cpu --seed 1e3", "--seed", "expected an integer"},
        {"check --backend cpu --scale 1e40", "--scale", "overflows float"},
        {"check --backend cpu --scale -1e39", "--scale", "overflows float"},
        {"check --backend cpu --scale 1e400", "--scale", "overflows float"},
        {"check --backend cpu --scale nan", "--scale", "expected a finite number"},
        {"check --backend cpu --scale inf", "--scale", "expected a finite number"},
        {"bench --backend cpu --iters 0", "--iters", "must be in [1, 100000]"},
    };
    for (const Bad& c : cases) {
        const Result r = ccattn(c.args.substr(0, 6) + small + c.args.substr(6));
        EXPECT_EQ(r.code, 2) << c.args << "\n" << r.out << r.err;
        EXPECT_NE(r.err.find("argument '" + c.option + "'"), std::string::npos) << c.args << "\nstderr: " << r.err;
        EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\nstderr: " << r.err;
    }
    const Result ok = ccattn("check " + small + "--backend cpu --documents 3:2,0:0,5:1 --scale 1e-3");
    EXPECT_EQ(ok.code, 0) << ok.out << ok.err;
}

// The library's errors reach the CLI user under the option that set the argument.
TEST_F(Cli, LibraryErrorsNameTheOption) {
    std::mt19937_64 rng(1);
    const Shape qs = {1, 5, 2, 8}, ks = {1, 6, 2, 8};
    write_f32(path("q.npy"), qs, random_floats(numel(qs), rng));
    write_f32(path("k.npy"), ks, random_floats(numel(ks), rng));
    write_f32(path("k3.npy"), {1, 6, 3, 8}, random_floats(6 * 3 * 8, rng));
    write_f32(path("do.npy"), {1, 5, 2, 4}, random_floats(40, rng));
    write_f32(path("qv.npy"), {10, 2, 8}, random_floats(160, rng));
    write_i32(path("cq.npy"), {0, 4, 10});
    write_i32(path("ck.npy"), {0, 7, 6});
    const std::string q = "run --q " + path("q.npy"), kv = " --v " + path("k.npy") + " --out-dir " + path("out");
    struct Bad {
        std::string args, option;
    };
    const Bad cases[] = {
        {q + " --k " + path("k3.npy") + " --v " + path("k3.npy") + " --out-dir " + path("out"), "--k"},
        {q + " --k " + path("k.npy") + kv + " --dout " + path("do.npy"), "--dout"},
        {"run --q " + path("qv.npy") + " --k " + path("k.npy") + kv + " --cu-seqlens-q " + path("cq.npy") +
             " --cu-seqlens-k " + path("ck.npy"),
         "--k"},
        {"run --q " + path("qv.npy") + " --k " + path("qv.npy") + " --v " + path("qv.npy") + " --out-dir " +
             path("out") + " --cu-seqlens-q " + path("cq.npy") + " --cu-seqlens-k " + path("ck.npy"),
         "--cu-seqlens-k"},
        {"check --backend cpu --dim-qk 1024", "--seqlen-q/--heads-q/--dim-qk"},
        {"bench --backend cpu --seqlen-q 8 --seqlen-k 8 --dim-v 600", "--dim-v"},
    };
    for (const Bad& c : cases) {
        const Result r = ccattn(c.args);
        EXPECT_EQ(r.code, 2) << c.args << "\n" << r.out << r.err;
        EXPECT_NE(r.err.find("argument '" + c.option + "'"), std::string::npos) << c.args << "\nstderr: " << r.err;
    }
}

TEST_F(Cli, BenchAppendsCsvRows) {
    const std::string csv = path("bench.csv");
    const std::string args =
        "bench --seqlen-q 64 --seqlen-k 16 --heads-q 2 --heads-kv 1 --dim-qk 32 --dim-v 32 --causal "
        "--compress-factor 4 --bwd --iters 2 --warmup 1 --threads 2 --csv " +
        csv;
    ASSERT_EQ(ccattn(args).code, 0);
    const Result r = ccattn(args + " --mask block_sparse");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("TFLOP/s"), std::string::npos) << r.out;
    std::ifstream f(csv);
    std::vector<std::string> lines;
    for (std::string line; std::getline(f, line);) lines.push_back(line);
    ASSERT_EQ(lines.size(), 5u);  // one header, forward and backward twice
    EXPECT_EQ(lines[0].rfind("date,case,direction", 0), 0u);
    EXPECT_NE(lines[4].find(",backward,cpu,block_sparse,bf16,"), std::string::npos) << lines[4];
}

// A CSV row that cannot be written (a full disk fails at close) is an error naming --csv.
TEST_F(Cli, BenchReportsACsvWriteFailure) {
    const Result r = ccattn("bench --seqlen-q 16 --seqlen-k 16 --heads-q 1 --heads-kv 1 --dim-qk 8 --dim-v 8 --iters 1 "
                            "--warmup 0 --threads 1 --csv /dev/full");
    EXPECT_EQ(r.code, 2) << r.out << r.err;
    EXPECT_NE(r.err.find("argument '--csv'"), std::string::npos) << r.err;
}

TEST_F(Cli, HelpAndUnknownCommands) {
    EXPECT_EQ(ccattn("--help").code, 0);
    const Result run_help = ccattn("run --help");
    EXPECT_EQ(run_help.code, 0);
    EXPECT_NE(run_help.out.find("--out-dir"), std::string::npos);
    EXPECT_EQ(ccattn("help bench").code, 0);
    EXPECT_EQ(ccattn("frobnicate").code, 2);
    EXPECT_EQ(ccattn("").code, 2);
}

// ---- band tensors: --band-lo / --band-hi ----

void write_i64(const fs::path& p, const Shape& s, const std::vector<std::int64_t>& x) {
    write_npy(p, "<i8", s, x.data(), 8 * x.size());
}
void write_i32(const fs::path& p, const Shape& s, const std::vector<std::int32_t>& x) {
    write_npy(p, "<i4", s, x.data(), 4 * x.size());
}

// Edges of the causal band cf 3, delta 2, window 4 for `batch` sequences of sq rows.
void band_edges(int batch, std::int64_t sq, std::vector<std::int64_t>& lo, std::vector<std::int64_t>& hi) {
    for (int b = 0; b < batch; ++b)
        for (std::int64_t i = 0; i < sq; ++i) {
            lo.push_back(core::floor_div(i + 2, 3) - 4);  // negative early: clamped to 0
            hi.push_back(core::floor_div(i + 2, 3) + 1);
        }
}

// run with band files describing the built-in band writes the same bytes as run with that band.
TEST_F(Cli, RunBandTensorsEqualTheBuiltInBand) {
    std::mt19937_64 rng(3);
    const Shape qs = {2, 37, 4, 24}, ks = {2, 13, 2, 24}, os = {2, 37, 4, 24};
    write_f32(path("q.npy"), qs, random_floats(numel(qs), rng));
    write_f32(path("k.npy"), ks, random_floats(numel(ks), rng));
    write_f32(path("do.npy"), os, random_floats(numel(os), rng));
    std::vector<std::int64_t> lo, hi;
    band_edges(2, 37, lo, hi);
    write_i64(path("lo.npy"), {2, 37}, lo);
    write_i32(path("hi.npy"), {2, 37}, std::vector<std::int32_t>(hi.begin(), hi.end()));
    const std::string inputs = "run --q " + path("q.npy") + " --k " + path("k.npy") + " --v " + path("k.npy") +
                               " --dout " + path("do.npy") + " --backend cpu --threads 2";
    Result r = ccattn(inputs + " --causal --compress-factor 3 --diag-offset 2 --window-left 4 --out-dir " + path("band"));
    ASSERT_EQ(r.code, 0) << r.err;
    r = ccattn(inputs + " --band-lo " + path("lo.npy") + " --band-hi " + path("hi.npy") + " --out-dir " + path("tensors"));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("band tensors"), std::string::npos) << r.out;
    for (const char* name : {"out.npy", "lse.npy", "dq.npy", "dk.npy", "dv.npy"})
        EXPECT_EQ(slurp(dir_ / "band" / name), slurp(dir_ / "tensors" / name)) << name;
}

TEST_F(Cli, CheckBandTensorsFixedAndVarlen) {
    std::vector<std::int64_t> lo, hi;
    band_edges(2, 70, lo, hi);
    write_i64(path("lo.npy"), {2, 70}, lo);
    write_i64(path("hi.npy"), {2, 70}, hi);
    write_i64(path("lo_t.npy"), {140}, lo);  // varlen [Tq]: two documents of 70 rows
    write_i64(path("hi_t.npy"), {140}, hi);
    const std::string common = " --heads-q 4 --heads-kv 2 --dim-qk 32 --dim-v 16 --threads 2 --bwd --backend cpu";
    for (const std::string& extra :
         {" --batch 2 --seqlen-q 70 --seqlen-k 20 --band-lo " + path("lo.npy") + " --band-hi " + path("hi.npy"),
          " --documents 70:25,70:9 --band-lo " + path("lo_t.npy") + " --band-hi " + path("hi_t.npy"),
          " --batch 2 --seqlen-q 70 --seqlen-k 20 --band-unchecked --band-lo " + path("lo.npy") + " --band-hi " +
              path("hi.npy")}) {
        const Result r = ccattn("check" + common + extra);
        EXPECT_EQ(r.code, 0) << extra << "\n" << r.out << r.err;
        EXPECT_NE(r.out.find("PASS"), std::string::npos) << r.out;
        EXPECT_NE(r.out.find("band tensors"), std::string::npos) << r.out;
    }
    const Result b = ccattn("bench --batch 2 --seqlen-q 70 --seqlen-k 20 --iters 1 --warmup 0" + common + " --band-lo " +
                            path("lo.npy") + " --band-hi " + path("hi.npy") + " --csv " + path("b.csv"));
    EXPECT_EQ(b.code, 0) << b.out << b.err;
    EXPECT_NE(slurp(path("b.csv")).find(",forward,cpu,band_tensors,bf16,"), std::string::npos);
}

TEST_F(Cli, BandTensorErrorsNameTheOption) {
    std::vector<std::int64_t> lo, hi;
    band_edges(2, 70, lo, hi);
    write_i64(path("lo.npy"), {2, 70}, lo);
    write_i64(path("hi.npy"), {2, 70}, hi);
    std::vector<std::int64_t> falling = hi;
    falling[70 + 40] = 0;  // sequence 1, row 40
    write_i64(path("falling.npy"), {2, 70}, falling);
    write_i64(path("short.npy"), {2, 69}, std::vector<std::int64_t>(hi.begin(), hi.begin() + 138));
    write_f32(path("float.npy"), {2, 70}, std::vector<float>(140, 0.f));
    const std::string sizes = "check --batch 2 --seqlen-q 70 --seqlen-k 20 --threads 2 --backend cpu ";
    const std::string files = " --band-lo " + path("lo.npy") + " --band-hi " + path("hi.npy");
    struct Bad {
        std::string args, option, says;
    };
    const Bad cases[] = {
        {sizes + "--band-lo " + path("lo.npy") + " --band-hi " + path("falling.npy"), "--band-hi", "row 40 of sequence 1"},
        {sizes + "--band-lo " + path("short.npy") + " --band-hi " + path("hi.npy"), "--band-lo", "70"},
        {sizes + "--band-lo " + path("lo.npy") + " --band-hi " + path("float.npy"), "--band-hi", "int32 or int64"},
        {sizes + "--band-lo " + path("lo.npy"), "--band-hi", "both"},
        {sizes + "--causal" + files, "--band-lo", "--causal"},
        {sizes + "--mask mask_mod" + files, "--band-lo", "native"},
        {sizes + "--band-unchecked", "--band-unchecked", "needs --band-lo"},
    };
    for (const Bad& c : cases) {
        const Result r = ccattn(c.args);
        EXPECT_EQ(r.code, 2) << c.args << "\n" << r.out << r.err;
        EXPECT_NE(r.err.find("'" + c.option + "'"), std::string::npos) << "stderr: " << r.err;
        EXPECT_NE(r.err.find(c.says), std::string::npos) << "stderr: " << r.err;
    }
}

}  // namespace
}  // namespace ccattn::test
