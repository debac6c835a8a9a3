"""The benchmark cases (issue 4's list), shared by run.py (ccattn) and peers.py (PyTorch peers).

Each case: batch, heads, lengths, compress factor cf and diag offset delta (kv j visible to query i
iff j*cf <= i + delta), head dims, whether to time the backward, and for varlen the per-document
(Sq, Sk) lengths. FLOPs come from the exact visible pairs: forward 2*pairs*Hq*(Dqk+Dv), backward
2*pairs*Hq*(3*Dqk+2*Dv).
"""
import random


def nsa_keys(n, block=32, stride=16):
    """Compressed keys of an NSA block-l stride-d compression over n tokens (complete blocks only)."""
    return (n - block) // stride + 1 if n >= block else 0


def _six_documents():
    rng = random.Random(7)  # the anchors' documents: 56005 queries, 3491 keys
    lens = [rng.randint(1000, 20000) for _ in range(6)]
    return [(n, nsa_keys(n)) for n in lens]


CASES = {
    "causal_16k_h16": dict(B=1, Hq=16, Hkv=16, nq=16384, nk=16384, cf=1, delta=0),
    "causal_16k_h64kv8": dict(B=1, Hq=64, Hkv=8, nq=16384, nk=16384, cf=1, delta=0),
    "cf4_16k_4k": dict(B=1, Hq=16, Hkv=16, nq=16384, nk=4096, cf=4, delta=0),
    "nsa_64k": dict(B=1, Hq=64, Hkv=4, nq=65536, nk=nsa_keys(65536), cf=16, delta=-31),
    "nsa_32k_d192": dict(B=1, Hq=64, Hkv=4, nq=32768, nk=nsa_keys(32768), cf=16, delta=-31, dk=192, dv=128),
    "cf64_128k_h16kv1": dict(B=1, Hq=16, Hkv=1, nq=131072, nk=2048, cf=64, delta=0),
    "cf64_128k_h32kv8": dict(B=1, Hq=32, Hkv=8, nq=131072, nk=2048, cf=64, delta=0),
    "cf64_1m_16k": dict(B=1, Hq=16, Hkv=4, nq=1048576, nk=16384, cf=64, delta=0, bwd=False),
    "varlen_6docs_cf16": dict(B=1, Hq=32, Hkv=4, cf=16, delta=-31, docs=_six_documents()),
}


def full(case):
    """The case with defaults filled in (dk = dv = 128, backward on, no documents)."""
    c = dict(dk=128, dv=128, bwd=True, docs=None)
    c.update(case)
    if c["docs"]:
        c["nq"] = sum(q for q, _ in c["docs"])
        c["nk"] = sum(k for _, k in c["docs"])
    return c


def visible_pairs(nq, nk, cf, delta):
    """Pairs (i, j), j < nk, with j*cf <= i + delta (floor division, as the contract says)."""
    total = 0
    for i in range(nq):
        hi = (i + delta) // cf + 1
        total += min(max(hi, 0), nk)
    return total


def flops(case):
    c = full(case)
    seqs = c["docs"] or [(c["nq"], c["nk"])] * c["B"]
    pairs = sum(visible_pairs(q, k, c["cf"], c["delta"]) for q, k in seqs)
    fwd = 2 * pairs * c["Hq"] * (c["dk"] + c["dv"])
    bwd = 2 * pairs * c["Hq"] * (3 * c["dk"] + 2 * c["dv"])
    return fwd, bwd
