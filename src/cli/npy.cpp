#include "cli/npy.h"

#include <cstring>
#include <fstream>
#include <iterator>

#include "core/dtype.h"

namespace ccattn::cli {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::int64_t kMaxElements = std::int64_t(1) << 40;

int element_size(NpyType t) { return t == NpyType::float16 ? 2 : 4; }

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

Status parse_header(const std::string& header, const std::string& what, NpyType& type,
                    std::vector<std::int64_t>& shape) {
    auto bad = [&](const std::string& msg) { return Status::invalid(what, msg); };
    // descr: '<f4', '<f2', '<i4' (and '|' byte order marks only for one-byte types, none accepted)
    std::size_t d = value_of(header, "descr");
    if (d == std::string::npos) return bad("the .npy header has no 'descr'");
    std::size_t q0 = header.find_first_of("'\"", d);
    std::size_t q1 = q0 == std::string::npos ? q0 : header.find(header[q0], q0 + 1);
    if (q1 == std::string::npos) return bad("the .npy header's 'descr' is malformed");
    const std::string descr = header.substr(q0 + 1, q1 - q0 - 1);
    if (descr.size() >= 2 && descr[0] == '>')
        return bad("is big-endian (" + descr + "); save it little-endian, e.g. arr.astype('<f4')");
    if (descr == "<f4")
        type = NpyType::float32;
    else if (descr == "<f2")
        type = NpyType::float16;
    else if (descr == "<i4")
        type = NpyType::int32;
    else
        return bad("has dtype '" + descr + "'; only float32 and float16 (int32 for cu_seqlens) are read");

    std::size_t f = value_of(header, "fortran_order");
    if (f == std::string::npos) return bad("the .npy header has no 'fortran_order'");
    const std::string order = trim(header.substr(f, 6));
    if (order.rfind("True", 0) == 0) return bad("is in Fortran order; save a C-order array (np.ascontiguousarray)");
    if (order.rfind("False", 0) != 0) return bad("the .npy header's 'fortran_order' is malformed");

    std::size_t s = value_of(header, "shape");
    std::size_t open = s == std::string::npos ? s : header.find('(', s);
    std::size_t close = open == std::string::npos ? open : header.find(')', open);
    if (close == std::string::npos) return bad("the .npy header's 'shape' is malformed");
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
        if (*end != '\0' || v < 0 || v > kMaxElements) return bad("the .npy shape entry '" + item + "' is invalid");
        shape.push_back(v);
    }
    return Status::success();
}

}  // namespace

std::int64_t NpyArray::numel() const {
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

Status read_npy(const std::string& path, const std::string& what, NpyArray& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status::invalid(what, "cannot open '" + path + "'");
    std::vector<unsigned char> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string where = what + " (" + path + ")";
    if (file.size() < 10 || std::memcmp(file.data(), kMagic, 6) != 0)
        return Status::invalid(where, "is not a .npy file (no \\x93NUMPY magic)");
    const int major = file[6];
    if (major < 1 || major > 3) return Status::invalid(where, "has unknown .npy version " + std::to_string(major));
    const int len_bytes = major == 1 ? 2 : 4;
    if (file.size() < std::size_t(8 + len_bytes)) return Status::invalid(where, "is truncated");
    const std::size_t header_len = read_le(&file[8], len_bytes);
    const std::size_t data_start = 8 + std::size_t(len_bytes) + header_len;
    if (file.size() < data_start) return Status::invalid(where, "is truncated (header)");
    const std::string header(file.begin() + 8 + len_bytes, file.begin() + std::ptrdiff_t(data_start));

    NpyArray a;
    Status s = parse_header(header, where, a.type, a.shape);
    if (!s.ok()) return s;
    __int128 bytes = element_size(a.type);
    for (std::int64_t d : a.shape) bytes *= d;
    if (bytes > (__int128(1) << 40)) return Status::invalid(where, "is too large");
    if (__int128(file.size() - data_start) != bytes)
        return Status::invalid(where, "holds " + std::to_string(file.size() - data_start) +
                                          " data bytes, its header says " + std::to_string(std::int64_t(bytes)));
    a.bytes.assign(file.begin() + std::ptrdiff_t(data_start), file.end());
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
    std::ofstream out(path, std::ios::binary);
    if (!out) return Status::invalid(path, "cannot be written");
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
    if (!out) return Status::invalid(path, "could not be written completely");
    return Status::success();
}

}  // namespace ccattn::cli
