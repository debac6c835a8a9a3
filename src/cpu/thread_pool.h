// Parallel loops for the CPU backend: independent work items handed out one at a time from an
// atomic counter (items differ in cost under a band mask, so static splitting would idle threads).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace ccattn::cpu {

// Threads to use for n items: `requested`, or all hardware threads when 0, never more than n.
inline int thread_count(int requested, std::int64_t n) {
    std::int64_t t = requested > 0 ? requested : std::max(1u, std::thread::hardware_concurrency());
    return int(std::max<std::int64_t>(1, std::min(t, n)));
}

// Calls body(item) for every item in [0, n) on up to `threads` threads. Each thread first calls
// make_body() once, so a body can own its scratch buffers. The first exception thrown by any
// thread stops the others taking new items and is rethrown here.
template <class MakeBody>
void parallel_for(std::int64_t n, int threads, MakeBody make_body) {
    if (n <= 0) return;
    std::atomic<std::int64_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto work = [&] {
        try {
            auto body = make_body();
            for (std::int64_t item; (item = next.fetch_add(1)) < n;) body(item);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
            next.store(n);
        }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < thread_count(threads, n); ++t) {
        try {
            pool.emplace_back(work);
        } catch (const std::system_error&) {  // no more threads: the ones running finish the work
            break;
        }
    }
    work();
    for (std::thread& t : pool) t.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace ccattn::cpu
