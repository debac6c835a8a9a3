"""ccattn's output and gradients on a case's inputs (its PyTorch package), and a peer's distance from
them: a peer that computes another mask must not enter the comparison. FlexAttention's FLASH
backend once ignored a BlockMask's sparsity silently (pytorch#188322).

The distance is the relative Frobenius error ||x - ref|| / ||ref|| over every element (gradients:
the largest of dq, dk, dv). Two bf16 implementations of the same attention differ by ~1e-3; a peer
above TOLERANCE is a MISMATCH. Without the package (or when ccattn fails a case) rows say `unchecked`.
"""
import math

import torch

import cases as bench_cases

try:
    import ccattn
    IMPORT_ERROR = None
except Exception as e:  # the peers still run, unchecked
    ccattn, IMPORT_ERROR = None, e

TOLERANCE = 2e-2
CHUNK = 1 << 15  # sequence positions per step of the error sums (bounds the fp32 temporaries)


def ccattn_out(c, q, k, v):
    """ccattn on [B, S, H, D] tensors (varlen: B = 1 and the documents packed along S); cases with a
    band-tensor-only mask through band tensors."""
    if c["band"]:
        lo, hi, shape = bench_cases.edges(c)
        band = tuple(torch.tensor(e, dtype=torch.int32, device=q.device).reshape(shape) for e in (lo, hi))
        return ccattn.attention(q, k, v, band=band)
    if not c["causal"]:
        return ccattn.attention(q, k, v)
    band = dict(causal=True, compress_factor=c["cf"], diag_offset=c["delta"])
    if not c["docs"]:
        return ccattn.attention(q, k, v, **band)
    cu = [torch.tensor([0] + list(lens), device=q.device).cumsum(0).to(torch.int32) for lens in zip(*c["docs"])]
    max_q, max_k = (max(lens) for lens in zip(*c["docs"]))
    return ccattn.attention_varlen(q[0], k[0], v[0], cu[0], cu[1], max_q, max_k, **band).unsqueeze(0)


def rel_err(x, ref):
    """||x - ref|| / ||ref|| for [B, S, ...] tensors of one shape (any strides), summed in chunks of S."""
    num = den = 0.0
    for s in range(0, ref.shape[1], CHUNK):
        a, b = x[:, s:s + CHUNK].float(), ref[:, s:s + CHUNK].float()
        num += (a - b).square().sum().item()
        den += b.square().sum().item()
    if den == 0:
        return 0.0 if num == 0 else math.inf
    return math.sqrt(num / den)  # nan when x has a nan or inf


def verdict(label, err):
    """(ok, note) for an error figure: non-finite or above TOLERANCE is a MISMATCH."""
    ok = math.isfinite(err) and err <= TOLERANCE
    return ok, f"{label}={err:.1e}" + ("" if ok else " MISMATCH")


class Reference:
    """ccattn's out (and, with dout, dq, dk, dv) for one case's [B, S, H, D] inputs."""

    def __init__(self, c, q, k, v, dout):
        self.out = self.grads = None
        self.unchecked = "unchecked"
        if ccattn is None:
            return
        try:
            out = ccattn_out(c, q, k, v)
            if dout is not None:
                self.grads = torch.autograd.grad(out, (q, k, v), dout)
            self.out = out.detach()
            self.unchecked = ""
        except Exception as e:  # a case ccattn cannot run: its peers run unchecked
            print(f"reference: ccattn failed: {' '.join(repr(e).split())[:300]}", flush=True)
            self.unchecked = "unchecked (ccattn failed)"

    def check_out(self, out):
        """(ok, note) for a peer's output in [B, S, H, D] (any strides)."""
        if self.out is None:
            return True, self.unchecked
        return verdict("relerr", rel_err(out, self.out))

    def check_grads(self, grads):
        """(ok, note) for a peer's (dq, dk, dv) in [B, S, H, D]."""
        if self.grads is None:
            return True, self.unchecked
        errs = [rel_err(g, r) for g, r in zip(grads, self.grads)]
        return verdict("grad_relerr", max(errs) if all(map(math.isfinite, errs)) else math.nan)
