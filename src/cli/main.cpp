// ccattn: run, check and time compressed-KV attention from the command line.
#include <cstring>
#include <exception>
#include <iostream>
#include <new>

#include "cli/commands.h"

namespace ccattn::cli {

int report_error(const std::string& command, const Status& s) {
    std::cerr << "ccattn " << command << ": error: " << s.to_string() << "\n";
    return kExitError;
}

namespace {

constexpr const char* kUsage =
    "usage: ccattn <command> [options]     (ccattn <command> --help for its options)\n"
    "\n"
    "Attention with compressed-KV band masks: query i sees compressed key j iff j*cf <= i + delta.\n"
    "\n"
    "commands:\n"
    "  run     attention on .npy tensors; writes out, lse (and dq, dk, dv) as float32 .npy\n"
    "  check   a random case against the fp64 reference: errors per output, PASS / FAIL\n"
    "  bench   time a case: ms and TFLOP/s (visible pairs only), optionally to a CSV file\n"
    "  demo    the main job: a GPU case when there is a GPU, else a small CPU case, timed and checked\n";

struct Command {
    const char* name;
    int (*run)(int, char**);
};

}  // namespace
}  // namespace ccattn::cli

int main(int argc, char** argv) {
    using namespace ccattn::cli;
    const Command commands[] = {
        {"run", run_command}, {"check", check_command}, {"bench", bench_command}, {"demo", demo_command}};
    if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
        std::strcmp(argv[1], "help") == 0) {
        // "ccattn help <command>" is "ccattn <command> --help".
        if (argc >= 3 && std::strcmp(argv[1], "help") == 0)
            for (const Command& c : commands)
                if (std::strcmp(argv[2], c.name) == 0) {
                    char flag[] = "--help";
                    char* args[] = {argv[0], argv[2], flag};
                    return c.run(3, args);
                }
        std::cout << kUsage;
        return argc < 2 ? kExitError : 0;
    }
    for (const Command& c : commands) {
        if (std::strcmp(argv[1], c.name) != 0) continue;
        // Commands report bad input as a Status; anything thrown still ends in a message, not an abort.
        try {
            return c.run(argc, argv);
        } catch (const std::bad_alloc&) {
            std::cerr << "ccattn " << c.name << ": error: out of host memory for this case\n";
        } catch (const std::exception& e) {
            std::cerr << "ccattn " << c.name << ": error: " << e.what() << "\n";
        } catch (...) {
            std::cerr << "ccattn " << c.name << ": error: unknown exception\n";
        }
        return kExitError;
    }
    std::cerr << "ccattn: unknown command '" << argv[1] << "'\n\n" << kUsage;
    return kExitError;
}
