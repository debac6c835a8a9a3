#include "cli/option_names.h"

#include <map>
#include <string>

namespace ccattn::cli {

Status with_option_names(Status s, TensorSource source) {
    static const std::map<std::string, std::string> common = {
        {"mask.compress_factor", "--compress-factor"},
        {"mask.diag_offset", "--diag-offset"},
        {"mask.window_left", "--window-left"},
        {"mask.lo", "--band-lo"},
        {"mask.hi", "--band-hi"},
        {"mask.block_sparse.tile_m", "--sparse-tile-m"},
        {"mask.block_sparse.tile_n", "--sparse-tile-n"},
        {"scale", "--scale"},
        {"num_threads", "--threads"},
        {"deterministic", "--deterministic"},
        {"backend", "--backend"},
    };
    static const std::map<std::string, std::string> files = {
        {"q", "--q"},       {"k", "--k"},
        {"v", "--v"},       {"dout", "--dout"},
        {"cu_seqlens_q", "--cu-seqlens-q"}, {"cu_seqlens_k", "--cu-seqlens-k"},
    };
    static const std::map<std::string, std::string> sizes = {
        {"q", "--seqlen-q/--heads-q/--dim-qk"},
        {"k", "--seqlen-k/--heads-kv/--dim-qk"},
        {"v", "--dim-v"},
        {"cu_seqlens_q", "--varlen/--documents"},
        {"cu_seqlens_k", "--varlen/--documents"},
    };
    for (const auto* names : {&common, source == TensorSource::files ? &files : &sizes}) {
        const auto it = names->find(s.argument);
        if (it != names->end()) {
            s.argument = it->second;
            break;
        }
    }
    return s;
}

}  // namespace ccattn::cli
