"""The benchmark cases, shared by run.py (ccattn), peers.py (PyTorch peers), plot.py and table.py.

Each case: batch, heads, lengths, whether the band is causal (non-causal: every key visible),
compress factor cf and diag offset delta (kv j visible to query i iff j*cf <= i + delta), or `band`, a
mask only band tensors give (("prefix_lm", p): positions below p bidirectional, causal after;
("chunked", c): blocks of c tokens, causal inside, docs/band_tensors.md), head dims,
whether to time the backward, for varlen the per-document (Sq, Sk) lengths, and the extra figure
its rows report in `note` (`metric`): `gbps` (decode: K/V bytes read per second) or `roofline`
(training shapes: % of the floor max(FLOPs / PEAK_FLOPS, bytes / PEAK_BYTES)).
FLOPs come from the exact visible pairs: forward 2*pairs*Hq*(Dqk+Dv), backward 2*pairs*Hq*(3*Dqk+2*Dv).
"""
import functools
import random

PEAK_FLOPS = 790e12  # bf16 dense tensor-core rate of the H200 (the roofline)
PEAK_BYTES = 4.2e12  # device-to-device copy bandwidth measured on the H200, bytes/s
ELEMENT = 2  # bytes of a bf16 element
LSE_ELEMENT = 4  # lse is float32


def nsa_keys(n, block=32, stride=16):
    """Compressed keys of an NSA block-l stride-d compression over n tokens (complete blocks only)."""
    return (n - block) // stride + 1 if n >= block else 0


def _six_documents():
    rng = random.Random(7)  # the anchors' documents: 56005 queries, 3491 keys
    lens = [rng.randint(1000, 20000) for _ in range(6)]
    return [(n, nsa_keys(n)) for n in lens]


def _nsa_training(batch, tokens):
    """NSA's compressed branch at a training shape: cf 16, delta -31 (blocks of 32, stride 16), 64/4 heads."""
    return dict(B=batch, Hq=64, Hkv=4, nq=tokens, nk=nsa_keys(tokens), cf=16, delta=-31, metric="roofline")


def _decode(batch, nq, nk, hq, hkv, page=0):
    """A few queries over a long cache of compressed keys: no mask, forward only, through the KV-cache
    call (ccattn.attention_with_kvcache): a contiguous cache, or pages of `page` rows in random order."""
    return dict(B=batch, Hq=hq, Hkv=hkv, nq=nq, nk=nk, causal=False, bwd=False, metric="gbps", page=page)


def _with_paged64(cases):
    """Each decode case followed by its `<case>_paged64` twin (pages of 64 keys)."""
    out = {}
    for name, case in cases.items():
        out[name] = case
        if case.get("metric") == "gbps":
            out[name + "_paged64"] = dict(case, page=64)
    return out


CASES = _with_paged64({  # in the default order of a run
    "causal_16k_h16": dict(B=1, Hq=16, Hkv=16, nq=16384, nk=16384, cf=1, delta=0),
    "causal_16k_h64kv8": dict(B=1, Hq=64, Hkv=8, nq=16384, nk=16384, cf=1, delta=0),
    "cf4_16k_4k": dict(B=1, Hq=16, Hkv=16, nq=16384, nk=4096, cf=4, delta=0),
    "nsa_64k": dict(B=1, Hq=64, Hkv=4, nq=65536, nk=nsa_keys(65536), cf=16, delta=-31),
    "nsa_32k_d192": dict(B=1, Hq=64, Hkv=4, nq=32768, nk=nsa_keys(32768), cf=16, delta=-31, dk=192, dv=128),
    "nsa_16k_d256": dict(B=1, Hq=32, Hkv=4, nq=16384, nk=nsa_keys(16384), cf=16, delta=-31, dk=256, dv=256),
    "cf64_128k_h16kv1": dict(B=1, Hq=16, Hkv=1, nq=131072, nk=2048, cf=64, delta=0),
    "cf64_128k_h32kv8": dict(B=1, Hq=32, Hkv=8, nq=131072, nk=2048, cf=64, delta=0),
    "cf64_1m_16k": dict(B=1, Hq=16, Hkv=4, nq=1048576, nk=16384, cf=64, delta=0, bwd=False),
    "varlen_6docs_cf16": dict(B=1, Hq=32, Hkv=4, cf=16, delta=-31, docs=_six_documents()),
    "nsa_b16_s2k": _nsa_training(16, 2048),
    "nsa_b8_s4k": _nsa_training(8, 4096),
    "nsa_b4_s8k": _nsa_training(4, 8192),
    "nsa_b2_s16k": _nsa_training(2, 16384),
    "prefix_lm_16k": dict(B=1, Hq=16, Hkv=16, nq=16384, nk=16384, band=("prefix_lm", 4096)),
    "chunked_16k": dict(B=1, Hq=16, Hkv=16, nq=16384, nk=16384, band=("chunked", 2048)),
    "decode_b32_sk4k": _decode(32, 1, 4096, 64, 4),
    "decode_b8_sk16k": _decode(8, 1, 16384, 32, 8),
    "decode_b64_sq4_sk2k": _decode(64, 4, 2048, 32, 4),
    "decode_b1_sk64k": _decode(1, 1, 65536, 64, 4),
})


def full(case):
    """The case with defaults filled in (causal, cf 1, delta 0, dk = dv = 128, backward on, no documents,
    no band-tensor-only mask, no KV cache: page None)."""
    c = dict(causal=True, cf=1, delta=0, dk=128, dv=128, bwd=True, docs=None, band=None, metric=None, page=None)
    c.update(case)
    if c["docs"]:
        c["nq"] = sum(q for q, _ in c["docs"])
        c["nk"] = sum(k for _, k in c["docs"])
    return c


def is_plain_causal(c):
    """Square causal attention without compression: the cases FA4 and SDPA's causal kernels run."""
    return (c["causal"] and c["cf"] == 1 and c["delta"] == 0 and c["nq"] == c["nk"] and not c["docs"]
            and not c["band"])


def sequences(c):
    """(Sq, Sk) of every sequence of a filled-in case."""
    return c["docs"] or [(c["nq"], c["nk"])] * c["B"]


@functools.lru_cache(maxsize=None)
def visible_pairs(nq, nk, cf, delta, causal=True):
    """Pairs (i, j), j < nk, with j*cf <= i + delta (floor division, as the contract says); all when not causal."""
    if not causal:
        return nq * nk
    total = 0
    for i in range(nq):
        hi = (i + delta) // cf + 1
        total += min(max(hi, 0), nk)
    return total


def row_edges(c, sq, sk):
    """(lo, hi) lists of one sequence's rows (unclamped): the band tensors of a filled-in case, its mask
    written row by row (the built-in band for cases without `band`)."""
    if c["band"]:
        kind, n = c["band"]
        if kind == "prefix_lm":
            return [0] * sq, [max(i + 1, n) for i in range(sq)]
        if kind == "chunked":
            return [i // n * n for i in range(sq)], [i + 1 for i in range(sq)]
        raise ValueError(f"unknown band {kind}")
    if not c["causal"]:
        return [0] * sq, [sk] * sq
    return [0] * sq, [(i + c["delta"]) // c["cf"] + 1 for i in range(sq)]


def edges(case):
    """(lo, hi, shape) of the case's band tensors: [B, Sq] rows, or [Tq] for varlen documents."""
    c = full(case)
    lo, hi = [], []
    for sq, sk in sequences(c):
        a, b = row_edges(c, sq, sk)
        lo += a
        hi += b
    return lo, hi, ([c["nq"]] if c["docs"] else [c["B"], c["nq"]])


def band_pairs(c, sq, sk):
    """Visible pairs of one sequence under a band-tensor-only mask (edges clamped to [0, Sk])."""
    lo, hi = row_edges(c, sq, sk)
    return sum(max(0, min(b, sk) - max(a, 0)) for a, b in zip(lo, hi))


def flops(case):
    """(forward, backward) FLOPs of the visible pairs."""
    c = full(case)
    if c["band"]:
        pairs = sum(band_pairs(c, q, k) for q, k in sequences(c))
    else:
        pairs = sum(visible_pairs(q, k, c["cf"], c["delta"], c["causal"]) for q, k in sequences(c))
    fwd = 2 * pairs * c["Hq"] * (c["dk"] + c["dv"])
    bwd = 2 * pairs * c["Hq"] * (3 * c["dk"] + 2 * c["dv"])
    return fwd, bwd


def kv_bytes(case):
    """Bytes of K and V read once (the decode figure): 2*B*Sk*Hkv*D*2 when Dqk = Dv = D."""
    c = full(case)
    tk = sum(k for _, k in sequences(c))
    return tk * c["Hkv"] * (c["dk"] + c["dv"]) * ELEMENT


def io_bytes(case):
    """(forward, backward) bytes moved at least once: forward reads q, k, v and writes out, lse; the
    backward reads q, k, v, out, lse, dout and writes dq, dk, dv."""
    c = full(case)
    tq = sum(q for q, _ in sequences(c))
    q = tq * c["Hq"] * c["dk"] * ELEMENT
    out = tq * c["Hq"] * c["dv"] * ELEMENT
    lse = tq * c["Hq"] * LSE_ELEMENT
    kv = kv_bytes(case)
    fwd = q + kv + out + lse
    bwd = fwd + out + q + kv  # + dout (like out), dq (like q), dk and dv (like k, v)
    return fwd, bwd


def roofline_ms(case):
    """(forward, backward) floor in ms: max(FLOPs / PEAK_FLOPS, bytes / PEAK_BYTES)."""
    return tuple(max(f / PEAK_FLOPS, b / PEAK_BYTES) * 1e3 for f, b in zip(flops(case), io_bytes(case)))


def gbps(case, ms):
    """GB/s of K/V read in ms milliseconds."""
    return kv_bytes(case) / (ms * 1e-3) / 1e9


def roofline_percent(case, direction, ms):
    """The floor's share of ms, in %: 100 = at the roofline."""
    fwd, bwd = roofline_ms(case)
    return 100.0 * (fwd if direction == "fwd" else bwd) / ms


def metric_note(case, direction, ms):
    """The case's extra figure for a row that took ms ('gbps=N' or 'roofline=N%'); '' if none or no time."""
    metric = full(case)["metric"]
    if not ms > 0:  # also false for nan
        return ""
    if metric == "gbps":
        return f"gbps={gbps(case, ms):.0f}"
    if metric == "roofline":
        return f"roofline={roofline_percent(case, direction, ms):.0f}%"
    return ""
