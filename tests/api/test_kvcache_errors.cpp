// Bad inputs of attention_with_kvcache (host tensors, CPU backend): the call fails, names the
// offending argument, and writes nothing (neither out / lse nor the cache rows k_new would fill).
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "ccattn/ccattn.h"
#include "cpu/kvcache_case.h"

namespace ccattn::test {
namespace {

KvCacheShape paged_shape() {
    KvCacheShape s;
    s.cache_lens = {5, 30};
    s.new_rows = 2;
    s.capacity = 32;
    s.page_size = 16;
    return s;
}

void expect_rejected(const std::function<void(KvCacheArgs&, KvCacheCase&)>& spoil, const std::string& argument,
                     Code code = Code::invalid_argument) {
    KvCacheCase c(paged_shape());
    KvCacheArgs a = c.args(Mask::none());
    spoil(a, c);
    const std::vector<std::uint16_t> k_before = c.k_cache, v_before = c.v_cache, out_before = c.out;
    const Status s = attention_with_kvcache(a);
    EXPECT_EQ(s.code, code) << s.to_string();
    EXPECT_EQ(s.argument, argument) << s.to_string();
    EXPECT_FALSE(s.message.empty());
    EXPECT_EQ(c.k_cache, k_before) << argument << ": the cache was written";
    EXPECT_EQ(c.v_cache, v_before) << argument;
    EXPECT_EQ(c.out, out_before) << argument << ": out was written";
}

TEST(KvCacheErrors, ValidCallSucceeds) {
    KvCacheCase c(paged_shape());
    const Status s = attention_with_kvcache(c.args(Mask::none()));
    EXPECT_TRUE(s.ok()) << s.to_string();
}

TEST(KvCacheErrors, NamesTheArgument) {
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.q.data = nullptr; }, "q");
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.k_cache.dtype = DType::fp16; }, "k_cache");
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.v_cache.shape[2] = 1; }, "v_cache");
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.q.shape[2] = 3; }, "k_cache");  // 3 heads over 2
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.page_table.dtype = DType::int64; }, "page_table");
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.cache_seqlens.data = nullptr; }, "cache_seqlens");
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.cache_seqlens.shape[0] = 3; }, "cache_seqlens");
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.v_new = Tensor{}; }, "v_new");  // the missing one
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.v_new.shape[1] = 1; }, "v_new");
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.out.shape[3] = 32; }, "out");
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.lse.dtype = DType::bf16; }, "lse");
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.query_pos = a.cache_seqlens; a.query_pos.shape[0] = 1; },
                    "query_pos");
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.num_splits = -1; }, "num_splits");
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.num_splits = 257; }, "num_splits");
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.mask.compress_factor = 0; }, "mask.compress_factor");
    expect_rejected([](KvCacheArgs& a, KvCacheCase&) { a.mask.kind = MaskKind::block_sparse; }, "mask.kind",
                    Code::unsupported);
}

// Page sizes: multiples of 16 in [16, 256] (the second dimension of a paged cache).
TEST(KvCacheErrors, PageSize) {
    for (std::int64_t bad : {8, 24, 272}) {
        KvCacheShape s = paged_shape();
        s.page_size = bad;
        s.capacity = 2 * bad;
        s.cache_lens = {1, 2};
        KvCacheCase c(s);
        const Status st = attention_with_kvcache(c.args(Mask::none()));
        EXPECT_EQ(st.argument, "k_cache") << bad << ": " << st.to_string();
    }
}

// Host contents are checked: lengths within the capacity (with the appended rows), pages that exist.
TEST(KvCacheErrors, HostContents) {
    expect_rejected([](KvCacheArgs&, KvCacheCase& c) { c.seqlens[1] = 31; }, "cache_seqlens");  // + 2 new > 32
    expect_rejected([](KvCacheArgs&, KvCacheCase& c) { c.seqlens[0] = -1; }, "cache_seqlens");
    expect_rejected([](KvCacheArgs&, KvCacheCase& c) { c.page_table[2] = std::int32_t(c.num_pages); }, "page_table");  // sequence 1, page 0
    expect_rejected([](KvCacheArgs&, KvCacheCase& c) { c.page_table[0] = -3; }, "page_table");
}

// Pages a sequence does not reach are not read, so they may hold anything.
TEST(KvCacheErrors, UnusedPagesAreNotChecked) {
    KvCacheCase c(paged_shape());
    c.page_table[1] = -1;  // sequence 0: 5 + 2 rows, one page
    const Status s = attention_with_kvcache(c.args(Mask::none()));
    EXPECT_TRUE(s.ok()) << s.to_string();
}

}  // namespace
}  // namespace ccattn::test
