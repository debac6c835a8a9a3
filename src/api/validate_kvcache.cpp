// Argument checking of attention_with_kvcache: KvCacheArgs -> core::AttnParams (with its KvCache), or an
// error naming the first offending argument. Device contents are never read (CUDA-graph capture);
// host contents are checked here.
#include <string>

#include "api/validate.h"
#include "ccattn/kvcache.h"

namespace ccattn::api {
namespace {

constexpr std::int64_t kMaxPageSize = 256;
constexpr std::int64_t kMaxKeys = (std::int64_t(1) << 31) - (1 << 16);  // keys index in 32 bits

std::string str(std::int64_t x) { return std::to_string(x); }

// Host cache_seqlens, page_table and query_pos: lengths fit the capacity, the pages the keys use exist.
Status check_host_contents(const KvCacheArgs& a, const core::AttnParams& p, std::int64_t capacity,
                           std::int64_t num_pages) {
    const auto* seqlens = static_cast<const std::int32_t*>(a.cache_seqlens.data);
    for (int b = 0; b < p.batch; ++b) {
        const std::int64_t len = seqlens[b * a.cache_seqlens.stride[0]];
        if (len < 0 || len + p.cache.new_rows > capacity)
            return Status::invalid("cache_seqlens", "entry " + str(b) + " (" + str(len) + ") plus " +
                                                        str(p.cache.new_rows) + " new rows must lie in [0, " +
                                                        str(capacity) + "] (the cache's rows)");
        if (p.cache.page_table == nullptr) continue;
        const std::int64_t pages = core::ceil_div(len + p.cache.new_rows, p.cache.page_size);
        for (std::int64_t i = 0; i < pages; ++i) {
            const std::int32_t page = p.cache.page_table[b * p.cache.page_table_stride + i * a.page_table.stride[1]];
            if (page < 0 || page >= num_pages)
                return Status::invalid("page_table", "entry [" + str(b) + ", " + str(i) + "] (" + str(page) +
                                                         ") outside [0, " + str(num_pages) + ")");
        }
    }
    return Status::success();
}

}  // namespace

Status fill_kvcache_params(const KvCacheArgs& a, core::AttnParams& p) {
    const Tensor& q = a.q;
    if (!q.defined()) return Status::invalid("q", "is null");
    if (q.dtype != DType::bf16 && q.dtype != DType::fp16)
        return Status::invalid("q", std::string("dtype must be bf16 or fp16, got ") + dtype_name(q.dtype));
    const DType dt = q.dtype;
    const Device dev = q.device;
    Status s = check_tensor(q, "q", 4, dt, dev, {});
    if (!s.ok()) return s;
    const std::int64_t batch = q.shape[0], sq = q.shape[1], hq = q.shape[2], dqk = q.shape[3];
    const bool paged = a.page_table.defined();
    if (!(s = check_tensor(a.k_cache, "k_cache", 4, dt, dev, {paged ? -1 : batch, -1, -1, dqk})).ok()) return s;
    const std::int64_t rows = a.k_cache.shape[1], hkv = a.k_cache.shape[2];
    if (!(s = check_tensor(a.v_cache, "v_cache", 4, dt, dev, {a.k_cache.shape[0], rows, hkv, -1})).ok()) return s;
    const std::int64_t dv = a.v_cache.shape[3];
    if (hq < 1) return Status::invalid("q", "needs at least one head");
    if (hkv < 1) return Status::invalid("k_cache", "needs at least one head");
    if (hq % hkv != 0)
        return Status::invalid("k_cache", "heads of q (" + str(hq) + ") must be a multiple of heads of k_cache (" +
                                              str(hkv) + ")");
    if (dqk < 1 || dqk > 512) return Status::unsupported("q", "head dim " + str(dqk) + " outside [1, 512]");
    if (dv < 1 || dv > 512) return Status::unsupported("v_cache", "head dim " + str(dv) + " outside [1, 512]");
    if (batch > (std::int64_t(1) << 30)) return Status::invalid("q", "batch size out of range");
    if (!(s = check_tensor(a.out, "out", 4, dt, dev, {batch, sq, hq, dv})).ok()) return s;

    std::int64_t capacity = rows, max_pages = 0;
    if (paged) {
        if (!(s = check_tensor(a.page_table, "page_table", 2, DType::int32, dev, {batch, -1})).ok()) return s;
        max_pages = a.page_table.shape[1];
        if (rows < 16 || rows > kMaxPageSize || rows % 16 != 0)
            return Status::invalid("k_cache", "page size (dimension 1) must be a multiple of 16 in [16, 256], got " +
                                                  str(rows));
        capacity = max_pages * rows;
    }
    if (!(s = check_tensor(a.cache_seqlens, "cache_seqlens", 1, DType::int32, dev, {batch})).ok()) return s;
    if (a.k_new.defined() != a.v_new.defined())
        return Status::invalid(a.k_new.defined() ? "v_new" : "k_new", "k_new and v_new come together");
    std::int64_t new_rows = 0;
    if (a.k_new.defined()) {
        if (!(s = check_tensor(a.k_new, "k_new", 4, dt, dev, {batch, -1, hkv, dqk})).ok()) return s;
        new_rows = a.k_new.shape[1];
        if (!(s = check_tensor(a.v_new, "v_new", 4, dt, dev, {batch, new_rows, hkv, dv})).ok()) return s;
    }
    if (new_rows > capacity)
        return Status::invalid("k_new", str(new_rows) + " new rows do not fit the cache's " + str(capacity));
    if (capacity > kMaxKeys) return Status::unsupported("k_cache", "a sequence's capacity must be below 2^31 - 2^16");
    if (a.query_pos.defined() && !(s = check_tensor(a.query_pos, "query_pos", 1, DType::int32, dev, {batch})).ok())
        return s;
    if (a.mask.kind != MaskKind::band && a.mask.kind != MaskKind::mask_mod)
        return Status::unsupported("mask.kind", "a KV cache takes the band or mask_mod masks");

    start_params(batch, hq, hkv, dqk, dv, dt, dev, p);
    p.seqlen_q = sq;
    p.seqlen_k = capacity;  // the longest a sequence can be
    p.total_q = batch * sq;
    p.total_k = batch * capacity;
    p.q = q.data;
    p.k = a.k_cache.data;
    p.v = a.v_cache.data;
    p.out = a.out.data;
    p.q_strides = strides_of(q);
    p.k_strides = strides_of(a.k_cache);
    p.v_strides = strides_of(a.v_cache);
    p.out_strides = strides_of(a.out);
    if (a.lse.defined()) {
        if (!(s = check_tensor(a.lse, "lse", 3, DType::fp32, dev, {batch, hq, sq})).ok()) return s;
        p.lse = static_cast<float*>(a.lse.data);
        p.lse_batch_stride = a.lse.stride[0];
        p.lse_head_stride = a.lse.stride[1];
    }
    core::KvCache& c = p.cache;
    c.seqlens = static_cast<const std::int32_t*>(a.cache_seqlens.data);
    if (a.cache_seqlens.stride[0] != 1 && batch > 1)
        return Status::invalid("cache_seqlens", "must be contiguous");
    if (a.query_pos.defined()) {
        if (a.query_pos.stride[0] != 1 && batch > 1) return Status::invalid("query_pos", "must be contiguous");
        c.query_pos = static_cast<const std::int32_t*>(a.query_pos.data);
    }
    if (paged) {
        c.page_table = static_cast<const std::int32_t*>(a.page_table.data);
        c.page_table_stride = a.page_table.stride[0];
        c.page_size = rows;
        c.num_pages = a.k_cache.shape[0];
    }
    c.new_rows = new_rows;
    if (new_rows > 0) {
        c.k_new = a.k_new.data;
        c.v_new = a.v_new.data;
        c.k_new_strides = strides_of(a.k_new);
        c.v_new_strides = strides_of(a.v_new);
    }
    if (!(s = fill_scale(a.scale, p)).ok()) return s;
    if (a.num_splits < 0 || a.num_splits > kMaxSplits)
        return Status::invalid("num_splits", "must be in [0, " + str(kMaxSplits) + "], got " + str(a.num_splits));
    p.num_splits = a.num_splits;
    if (a.num_threads < 0) return Status::invalid("num_threads", "must be >= 0");
    p.num_threads = a.num_threads;
    p.stream = a.stream;
    if (!(s = fill_mask(a.mask, dev, p)).ok()) return s;
    if (dev == Device::cpu) return check_host_contents(a, p, capacity, paged ? a.k_cache.shape[0] : 0);
    return Status::success();
}

}  // namespace ccattn::api
