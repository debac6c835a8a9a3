// ccattn public API: the result of every call. A failed call names the offending argument and has
// written nothing.
#pragma once

#include <string>
#include <utility>

namespace ccattn {

enum class Code { ok, invalid_argument, unsupported, backend_unavailable, cuda_error, internal };

struct Status {
    Code code = Code::ok;
    std::string argument;  // the offending argument ("q", "cu_seqlens_k", "mask.compress_factor", ...)
    std::string message;

    bool ok() const { return code == Code::ok; }
    std::string to_string() const {
        if (ok()) return "ok";
        return argument.empty() ? message : "argument '" + argument + "': " + message;
    }
    static Status success() { return {}; }
    static Status invalid(std::string arg, std::string msg) {
        return {Code::invalid_argument, std::move(arg), std::move(msg)};
    }
    static Status unsupported(std::string arg, std::string msg) {
        return {Code::unsupported, std::move(arg), std::move(msg)};
    }
};

}  // namespace ccattn
