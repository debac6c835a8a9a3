#include "cli/npy.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/dtype.h"

namespace ccattn::cli {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::int64_t kMaxElements = std::int64_t(1) << 40;  // per extent
constexpr std::int64_t kMaxBytes = std::int64_t(1) << 40;
constexpr std::size_t kMaxHeaderBytes = std::size_t(1) << 20;  // numpy writes a few hundred
constexpr std::size_t kReadChunk = std::size_t(64) << 20;

int element_size(NpyType t) { return t == NpyType::float16 ? 2 : t == NpyType::int64 ? 8 : 4; }

// Reads n bytes; false at end of file or on a read error (a directory, a device that fails).
bool read_exactly(std::istream& in, void* dst, std::size_t n) {
    in.read(static_cast<char*>(dst), std::streamsize(n));
    return std::size_t(in.gcount()) == n;
}

std::uint32_t read_le(const unsigned char* p, int bytes) {
    std::uint32_t v = 0;
    for (int b = bytes - 1; b >= 0; --b) v = (v << 8) | p[b];
    return v;
}

std::string trim(const std::string& s) {
    const std::size_t a = s.find_first_not_of(" \t\n");
    if (a == std::string::npos) return "";
    return s.substr(a, s.find_last_not_of(" \t\n") - a + 1);
}

// The text after `'key':` in the header dict, or npos.
std::size_t value_of(const std::string& header, const std::string& key) {
    for (const char* quote : {"'", "\""}) {
        std::size_t k = header.find(quote + key + quote);
        if (k == std::string::npos) continue;
        std::size_t colon = header.find(':', k);
        return colon == std::string::npos ? colon : colon + 1;
    }
    return std::string::npos;
}

// A cast to a dtype the reader takes, for an array saved as `descr` (e.g. '>i8' -> '<i4').
std::string cast_hint(const std::string& descr) {
    const char kind = descr.size() >= 2 ? descr[1] : '?';
    if (kind == 'f') return descr == ">f2" ? "arr.astype('<f2')" : "arr.astype('<f4')";
    if (kind == 'i' || kind == 'u') return "arr.astype('<i4')";
    return "";
}

// Errors are what the file "has" or "is": the caller puts its path in front.
Status parse_header(const std::string& header, NpyType& type, std::vector<std::int64_t>& shape) {
    auto bad = [](const std::string& msg) { return Status::invalid("", msg); };
    // descr: '<f4', '<f2', '<i4' (and '|' byte order marks only for one-byte types, none accepted)
    std::size_t d = value_of(header, "descr");
    if (d == std::string::npos) return bad("has no 'descr' in its .npy header");
    std::size_t q0 = header.find_first_of("'\"", d);
    std::size_t q1 = q0 == std::string::npos ? q0 : header.find(header[q0], q0 + 1);
    if (q1 == std::string::npos) return bad("has a malformed 'descr' in its .npy header");
    const std::string descr = header.substr(q0 + 1, q1 - q0 - 1);
    if (descr == "<f4")
        type = NpyType::float32;
    else if (descr == "<f2")
        type = NpyType::float16;
    else if (descr == "<i4")
        type = NpyType::int32;
    else if (descr == "<i8")
        type = NpyType::int64;
    else {
        const std::string hint = cast_hint(descr);
        return bad("has dtype '" + descr + "'" + (descr[0] == '>' ? " (big-endian)" : "") +
                   "; only little-endian float32 and float16 (int32 for cu_seqlens, int32 or int64 for band edges) are read" +
                   (hint.empty() ? "" : ": save " + hint));
    }

    std::size_t f = value_of(header, "fortran_order");
    if (f == std::string::npos) return bad("has no 'fortran_order' in its .npy header");
    const std::string order = trim(header.substr(f, 6));
    if (order.rfind("True", 0) == 0) return bad("is in Fortran order; save a C-order array (np.ascontiguousarray)");
    if (order.rfind("False", 0) != 0) return bad("has a malformed 'fortran_order' in its .npy header");

    std::size_t s = value_of(header, "shape");
    std::size_t open = s == std::string::npos ? s : header.find('(', s);
    std::size_t close = open == std::string::npos ? open : header.find(')', open);
    if (close == std::string::npos) return bad("has a malformed 'shape' in its .npy header");
    const std::string dims = header.substr(open + 1, close - open - 1);
    shape.clear();
    std::size_t pos = 0;
    while (pos < dims.size()) {
        std::size_t comma = dims.find(',', pos);
        if (comma == std::string::npos) comma = dims.size();
        const std::string item = trim(dims.substr(pos, comma - pos));
        pos = comma + 1;
        if (item.empty()) continue;
        char* end = nullptr;
        const long long v = std::strtoll(item.c_str(), &end, 10);
        if (*end != '\0' || v < 0 || v > kMaxElements) return bad("has an invalid shape entry '" + item + "'");
        shape.push_back(v);
    }
    return Status::success();
}

}  // namespace

std::int64_t NpyArray::numel() const {
    // A zero extent empties the array whatever the others are (read_npy bounds the product otherwise).
    if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
    std::int64_t n = 1;
    for (std::int64_t d : shape) n *= d;
    return n;
}

std::vector<float> NpyArray::to_float() const {
    std::vector<float> out(static_cast<std::size_t>(numel()));
    for (std::size_t e = 0; e < out.size(); ++e) {
        if (type == NpyType::float16) {
            out[e] = core::fp16_to_float(std::uint16_t(read_le(&bytes[2 * e], 2)));
        } else {
            std::uint32_t u = read_le(&bytes[4 * e], 4);
            std::memcpy(&out[e], &u, 4);
        }
    }
    return out;
}

std::vector<std::int32_t> NpyArray::to_int32() const {
    std::vector<std::int32_t> out(static_cast<std::size_t>(numel()));
    for (std::size_t e = 0; e < out.size(); ++e) out[e] = std::int32_t(read_le(&bytes[4 * e], 4));
    return out;
}

std::vector<std::int64_t> NpyArray::to_int64() const {
    if (type == NpyType::int32) {
        const std::vector<std::int32_t> narrow = to_int32();
        return {narrow.begin(), narrow.end()};
    }
    std::vector<std::int64_t> out(static_cast<std::size_t>(numel()));
    for (std::size_t e = 0; e < out.size(); ++e)
        out[e] = std::int64_t(read_le(&bytes[8 * e], 4)) | std::int64_t(std::uint64_t(read_le(&bytes[8 * e + 4], 4)) << 32);
    return out;
}

Status read_npy(const std::string& path, const std::string& what, NpyArray& out) {
    auto bad = [&](const std::string& msg) { return Status::invalid(what, "'" + path + "' " + msg); };
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) return bad("is a directory, not a .npy file");
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status::invalid(what, "cannot open '" + path + "'");
    // Magic, version, header length, header: read piece by piece, so that a file that is no .npy
    // (or a device that never ends) stops at its first bytes.
    unsigned char preamble[12];
    if (!read_exactly(in, preamble, 8) || std::memcmp(preamble, kMagic, 6) != 0)
        return bad("is not a .npy file (no \\x93NUMPY magic)");
    const int major = preamble[6];
    if (major < 1 || major > 3) return bad("has unknown .npy version " + std::to_string(major));
    const int len_bytes = major == 1 ? 2 : 4;
    if (!read_exactly(in, preamble + 8, len_bytes)) return bad("is truncated (header length)");
    const std::size_t header_len = read_le(preamble + 8, len_bytes);
    if (header_len > kMaxHeaderBytes)
        return bad("has a header of " + std::to_string(header_len) + " bytes (at most " +
                   std::to_string(kMaxHeaderBytes) + " are read)");
    std::string header(header_len, '\0');
    if (!read_exactly(in, header.data(), header_len)) return bad("is truncated (header)");

    NpyArray a;
    const Status s = parse_header(header, a.type, a.shape);
    if (!s.ok()) return bad(s.message);
    // The data's size, checked against the limit extent by extent so that no product overflows
    // (extents are at most 2^40 each); a zero extent makes it 0 whatever the others are.
    const bool empty = std::find(a.shape.begin(), a.shape.end(), 0) != a.shape.end();
    std::int64_t bytes = empty ? 0 : element_size(a.type);
    for (std::int64_t d : a.shape) {
        if (bytes == 0) break;
        if (bytes > kMaxBytes / d) return bad("is too large (more than 2^40 data bytes)");
        bytes *= d;
    }
    // Exactly the bytes the header promises, in chunks: memory follows what the file holds.
    const std::size_t want = std::size_t(bytes);
    while (a.bytes.size() < want && in) {
        const std::size_t at = a.bytes.size(), n = std::min(kReadChunk, want - at);
        a.bytes.resize(at + n);
        in.read(reinterpret_cast<char*>(a.bytes.data() + at), std::streamsize(n));
        a.bytes.resize(at + std::size_t(in.gcount()));
    }
    if (in.bad()) return bad("could not be read");
    if (a.bytes.size() < want)
        return bad("holds " + std::to_string(a.bytes.size()) + " data bytes, its header says " + std::to_string(want));
    if (in.peek() != std::ifstream::traits_type::eof())
        return bad("holds more than the " + std::to_string(want) + " data bytes its header says");
    out = std::move(a);
    return Status::success();
}

Status write_npy(const std::string& path, const std::vector<std::int64_t>& shape, const std::vector<float>& data) {
    std::string dims;
    for (std::size_t d = 0; d < shape.size(); ++d) dims += (d ? ", " : "") + std::to_string(shape[d]);
    if (shape.size() == 1) dims += ",";  // a one-element Python tuple
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
    // Version 1.0: magic, version, 2-byte length, header padded with spaces to a multiple of 64, '\n'.
    const std::size_t unpadded = 10 + header.size() + 1;
    header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
    auto failed = [&] { return Status::invalid("", "cannot write '" + path + "': " + std::strerror(errno)); };
    std::ofstream out(path, std::ios::binary);
    if (!out) return failed();
    out.write(kMagic, 6);
    const unsigned char preamble[4] = {1, 0, (unsigned char)(header.size() & 0xff),
                                       (unsigned char)(header.size() >> 8)};
    out.write(reinterpret_cast<const char*>(preamble), 4);
    out << header;
    for (float x : data) {
        std::uint32_t u;
        std::memcpy(&u, &x, 4);
        const unsigned char le[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                                     (unsigned char)(u >> 24)};
        out.write(reinterpret_cast<const char*>(le), 4);
    }
    // Small files reach the disk only at close: its result counts.
    out.close();
    return out.fail() ? failed() : Status::success();
}

}  // namespace ccattn::cli
