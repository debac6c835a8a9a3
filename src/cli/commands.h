// The ccattn commands. Each takes the whole argv (argv[1] is the command name) and returns the
// process exit code: 0 success, 1 a check that failed, 2 bad input or a failed call.
#pragma once

#include <string>

#include "ccattn/status.h"

namespace ccattn::cli {

int run_command(int argc, char** argv);
int check_command(int argc, char** argv);
int bench_command(int argc, char** argv);
int demo_command(int argc, char** argv);

constexpr int kExitFail = 1;
constexpr int kExitError = 2;

// Prints "ccattn <command>: error: <status>" to stderr; returns kExitError.
int report_error(const std::string& command, const Status& s);

}  // namespace ccattn::cli
