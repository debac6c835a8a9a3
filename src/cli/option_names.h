// The library names a bad argument as the C++ API spells it ("k", "mask.window_left"); a CLI user
// knows the option it came from ("--k", "--window-left").
#pragma once

#include "ccattn/status.h"

namespace ccattn::cli {

// Where the tensors of a command come from: .npy files (run) or sizes (check, bench).
enum class TensorSource { files, sizes };

// s with its argument renamed to the option(s) that set it; unchanged when no option did.
Status with_option_names(Status s, TensorSource source);

}  // namespace ccattn::cli
