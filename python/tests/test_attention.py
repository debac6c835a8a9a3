"""ccattn.attention / attention_varlen against the float32 dense-mask reference: out, lse, dq, dk, dv.

The bound follows flash-attn's tests: ccattn's error from the float32 reference may be at most twice
PyTorch's own error when it computes the same reference in the input dtype, plus a small floor.
"""

import math
import zlib
from typing import NamedTuple, Optional

import pytest
import torch

import ccattn
import reference
from conftest import skip_unsupported_dims

# Error floor: one unit in the last place of the dtype, at the reference's largest magnitude.
FLOOR = {torch.bfloat16: 2 ** -7, torch.float16: 2 ** -10}


def assert_close(name, actual, ref, ref_lowp, dtype):
    actual, ref, ref_lowp = actual.float().cpu(), ref.float().cpu(), ref_lowp.float().cpu()
    assert actual.shape == ref.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(ref.shape)}"
    finite = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(actual), finite), f"{name}: -inf / finite pattern differs"
    assert torch.equal(actual[~finite], ref[~finite]), f"{name}: non-finite values differ"
    if not finite.any():
        return
    err = (actual[finite] - ref[finite]).abs().max().item()
    base = (ref_lowp[finite] - ref[finite]).abs().max().item()
    tol = 2 * base + FLOOR[dtype] * max(1.0, ref[finite].abs().max().item())
    assert err <= tol, f"{name}: max error {err:.3g} > {tol:.3g} (PyTorch's own {dtype} error {base:.3g})"


def check_against_reference(q, k, v, visible, dout, scale, out, lse, grads, dtype):
    ref_out, ref_lse, ref_grads = reference.run(q, k, v, visible, dout, scale)
    low_out, low_lse, low_grads = reference.run(q, k, v, visible, dout, scale, dtype=dtype)
    assert_close("out", out, ref_out, low_out, dtype)
    assert_close("lse", lse, ref_lse, low_lse, dtype)
    for name, g, rg, lg in zip(("dq", "dk", "dv"), grads, ref_grads, low_grads):
        assert g.dtype == dtype, f"{name}: dtype {g.dtype}"
        assert_close(name, g, rg, lg, dtype)


def randn(shape, dtype, device, gen):
    return torch.randn(shape, generator=gen).to(dtype=dtype, device=device).requires_grad_()


class Fixed(NamedTuple):
    b: int
    sq: int
    sk: int
    hq: int
    hkv: int
    dqk: int
    dv: int
    causal: bool = True
    cf: int = 1
    delta: Optional[int] = None
    window: Optional[int] = None
    scale: Optional[float] = None


# The C++ CPU suite's matrix (tests/cpu/test_attention.cpp), then cases in the GPU kernels' head dims.
FIXED_CASES = {
    "single": Fixed(1, 1, 1, 1, 1, 64, 64),
    "seven_cf3_gqa2_d48x32": Fixed(2, 7, 3, 2, 1, 48, 32, cf=3),
    "cf4_not_dividing_gqa4": Fixed(1, 113, 29, 4, 1, 64, 64, cf=4),
    "causal_gqa3_d96x64": Fixed(1, 203, 203, 6, 2, 96, 64),
    "nsa_window_gqa8": Fixed(1, 203, 51, 8, 1, 32, 32, cf=4, delta=-3, window=5),
    "positive_delta_gqa16": Fixed(1, 150, 40, 16, 1, 16, 16, cf=4, delta=37),
    "empty_rows": Fixed(2, 113, 57, 2, 2, 64, 64, cf=2, delta=-100),
    "all_rows_empty": Fixed(1, 30, 20, 2, 1, 32, 32, delta=-40),
    "no_mask_gqa2": Fixed(1, 77, 130, 4, 2, 64, 48, causal=False),
    "window_only": Fixed(1, 90, 90, 1, 1, 32, 32, causal=False, window=10),
    "bottom_right_sq_gt_sk": Fixed(1, 100, 37, 3, 3, 32, 32),
    "bottom_right_sq_lt_sk": Fixed(1, 37, 100, 2, 1, 32, 32),
    "d128_long_kv": Fixed(1, 130, 300, 2, 1, 128, 128, cf=2),
    "d512": Fixed(1, 9, 20, 1, 1, 512, 512, cf=2),
    "no_keys": Fixed(2, 20, 0, 2, 1, 32, 32, cf=2),
    "no_queries": Fixed(1, 0, 20, 2, 2, 32, 16, causal=False),
    "d1": Fixed(1, 33, 33, 2, 1, 1, 1),
    "many_tiles": Fixed(1, 640, 640, 4, 2, 64, 64),
    "scale": Fixed(1, 65, 65, 2, 2, 64, 64, delta=0, scale=0.3),
    "bottom_right_gqa2": Fixed(2, 113, 203, 4, 2, 64, 64),
    "sq_gt_sk_mqa": Fixed(2, 203, 113, 4, 1, 64, 64),
    "seed_default_d128": Fixed(1, 239, 60, 8, 8, 128, 128, cf=4),
    "blocks_16_d128_gqa2": Fixed(2, 200, 13, 6, 3, 128, 128, cf=16, delta=-15),
    "nsa_l32_d8_mqa16": Fixed(1, 257, 31, 16, 1, 64, 64, cf=8, delta=-31),
    "d192x128_positive_delta": Fixed(2, 77, 25, 4, 4, 192, 128, cf=3, delta=5, scale=0.3),
    "sliding_window": Fixed(1, 150, 150, 2, 1, 64, 64, window=17),
    "compressed_window": Fixed(1, 130, 40, 4, 2, 64, 64, cf=3, delta=-2, window=4),
    "no_mask_d256": Fixed(2, 50, 70, 4, 2, 256, 256, causal=False),
    "window_no_causal_cf2": Fixed(1, 80, 80, 2, 2, 64, 64, causal=False, cf=2, delta=3, window=6),
    "every_row_empty_cf5": Fixed(1, 64, 20, 4, 4, 64, 64, cf=5, delta=-1000),
    "decode_one_query": Fixed(3, 1, 77, 12, 4, 64, 64, cf=7, delta=500),
    "default_delta_window_gqa2": Fixed(2, 45, 19, 10, 5, 64, 64, cf=3, window=2),
    "no_keys_d64": Fixed(1, 33, 0, 2, 1, 64, 64, cf=4),
    "no_queries_d64": Fixed(2, 0, 20, 4, 2, 64, 64, cf=2),
}


@pytest.mark.parametrize("name", FIXED_CASES)
def test_fixed(name, device, dtype):
    c = FIXED_CASES[name]
    skip_unsupported_dims(device, c.dqk, c.dv)
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    q = randn((c.b, c.sq, c.hq, c.dqk), dtype, device, gen)
    k = randn((c.b, c.sk, c.hkv, c.dqk), dtype, device, gen)
    v = randn((c.b, c.sk, c.hkv, c.dv), dtype, device, gen)
    dout = torch.randn((c.b, c.sq, c.hq, c.dv), generator=gen).to(dtype=dtype, device=device)

    out, lse = ccattn.attention(q, k, v, causal=c.causal, compress_factor=c.cf, diag_offset=c.delta,
                                window_left=c.window, scale=c.scale, return_lse=True)
    assert out.shape == (c.b, c.sq, c.hq, c.dv) and out.dtype == dtype and out.device.type == device
    assert lse.shape == (c.b, c.hq, c.sq) and lse.dtype == torch.float32
    assert not lse.requires_grad
    out.backward(dout)

    visible = reference.band_visible(c.sq, c.sk, c.causal, c.cf, c.delta, c.window)
    check_against_reference(q, k, v, visible, dout, c.scale, out, lse, (q.grad, k.grad, v.grad), dtype)


class Varlen(NamedTuple):
    lens_q: list
    lens_k: list
    hq: int
    hkv: int
    dqk: int
    dv: int
    causal: bool = True
    cf: int = 1
    delta: Optional[int] = None
    window: Optional[int] = None


VARLEN_CASES = {
    "varlen_empty_sequences": Varlen([0, 70, 1, 130, 5, 9], [3, 20, 0, 33, 9, 0], 4, 2, 64, 64, cf=4),
    "varlen_bottom_right": Varlen([17, 64, 65, 3], [40, 64, 7, 100], 3, 1, 32, 48),
    "varlen_window": Varlen([200, 1], [60, 0], 2, 2, 64, 32, cf=3, delta=-2, window=4),
    "varlen_empty_cf4_gqa2": Varlen([0, 17, 0, 43, 1], [5, 6, 0, 11, 0], 4, 2, 64, 64, cf=4),
    "varlen_bottom_right_mqa": Varlen([30, 1, 64], [30, 9, 64], 2, 1, 64, 64),
    "varlen_nsa_l16_d8": Varlen([57, 0, 33], [7, 0, 4], 8, 2, 128, 128, cf=8, delta=-15),
    "varlen_window_positive_delta": Varlen([20, 41], [50, 13], 3, 3, 64, 64, cf=3, delta=4, window=2),
    "varlen_nothing": Varlen([0, 0], [0, 0], 2, 2, 64, 64, cf=2),
    "varlen_no_mask_d48x80": Varlen([25, 14], [25, 14], 4, 4, 48, 80, causal=False),
}


@pytest.mark.parametrize("name", VARLEN_CASES)
def test_varlen(name, device, dtype):
    c = VARLEN_CASES[name]
    skip_unsupported_dims(device, c.dqk, c.dv)
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    cu_q = torch.tensor([0] + c.lens_q).cumsum(0).to(torch.int32)
    cu_k = torch.tensor([0] + c.lens_k).cumsum(0).to(torch.int32)
    tq, tk = int(cu_q[-1]), int(cu_k[-1])
    q = randn((tq, c.hq, c.dqk), dtype, device, gen)
    k = randn((tk, c.hkv, c.dqk), dtype, device, gen)
    v = randn((tk, c.hkv, c.dv), dtype, device, gen)
    dout = torch.randn((tq, c.hq, c.dv), generator=gen).to(dtype=dtype, device=device)

    out, lse = ccattn.attention_varlen(q, k, v, cu_q.to(device), cu_k.to(device), max(c.lens_q), max(c.lens_k),
                                       causal=c.causal, compress_factor=c.cf, diag_offset=c.delta,
                                       window_left=c.window, return_lse=True)
    assert out.shape == (tq, c.hq, c.dv) and lse.shape == (c.hq, tq)
    out.backward(dout)

    # The reference sees the packed tensors as one batch under a block-diagonal mask.
    visible = reference.varlen_visible(cu_q, cu_k, c.causal, c.cf, c.delta, c.window)
    batched = [t.detach().unsqueeze(0) for t in (q, k, v, dout)]
    check_against_reference(*batched[:3], visible, batched[3], None, out.unsqueeze(0), lse.unsqueeze(0),
                            [g.unsqueeze(0) for g in (q.grad, k.grad, v.grad)], dtype)


def test_strided_inputs(device, dtype):
    """Views with free strides (a packed qkv projection, a transposed layout) and a non-contiguous
    last dimension (copied) give the same result as contiguous inputs."""
    gen = torch.Generator().manual_seed(7)
    b, s, h, d = 2, 61, 4, 64
    qkv = torch.randn(b, s, 3, h, d, generator=gen).to(dtype=dtype, device=device)
    q, k, v = qkv.unbind(2)  # strides (s*3*h*d, 3*h*d, d, 1)
    k_t = k.transpose(1, 2).contiguous().transpose(1, 2)  # [B, S, H, D] view of a [B, H, S, D] buffer
    v_nc = v.transpose(-1, -2).contiguous().transpose(-1, -2)  # last dimension not contiguous
    assert not q.is_contiguous() and not k_t.is_contiguous() and v_nc.stride(-1) != 1
    kwargs = dict(causal=True, compress_factor=2, diag_offset=-1)
    out = ccattn.attention(q, k_t, v_nc, **kwargs)
    ref = ccattn.attention(q.contiguous(), k.contiguous(), v.contiguous(), **kwargs)
    assert torch.equal(out, ref)


def test_default_scale(device):
    """scale=None is 1/sqrt(Dqk); an explicit equal scale gives the same bits."""
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 40, 2, 128, generator=gen).to(torch.bfloat16).to(device) for _ in range(3))
    a = ccattn.attention(q, k, v, causal=True, compress_factor=3)
    b = ccattn.attention(q, k, v, causal=True, compress_factor=3, scale=1 / math.sqrt(128))
    assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_current_stream():
    """Inputs produced by slow work on a side stream: a kernel launched on any other stream would
    read them before they are ready."""
    gen = torch.Generator().manual_seed(5)
    base = torch.randn(4, 256, 8, 64, generator=gen).cuda()
    expected = ccattn.attention(*(base.to(torch.bfloat16),) * 3, causal=True, compress_factor=2)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        big = torch.randn(4096, 4096, device="cuda")
        for _ in range(20):  # keep the stream busy before q, k, v exist
            big = (big @ big).clamp_(-1, 1)
        x = (base + 0 * big[0, 0]).to(torch.bfloat16)
        out = ccattn.attention(x, x, x, causal=True, compress_factor=2)
    torch.cuda.synchronize()
    assert torch.equal(out, expected)


def _gradients(q, k, v, dout, **mask):
    out = ccattn.attention(q, k, v, **mask)
    return torch.autograd.grad(out, (q, k, v), dout)


@pytest.mark.parametrize("shape, mask", [
    ((1, 1100, 1100, 2, 1, 64), dict(causal=True)),  # many kv tiles add into each dq row
    ((2, 4096, 128, 8, 2, 64), dict(causal=True, compress_factor=32)),  # chunked q range: dk, dv sums too
    ((1, 700, 700, 6, 2, 128), dict(causal=True, window_left=64)),
], ids=["causal", "cf32-chunks", "window-gqa"])
def test_deterministic_gradients_are_bitwise_identical(device, shape, mask):
    """deterministic=True: repeated backwards (on CUDA also from another stream, beside other work)
    give the same bits, and the gradients the default mode gives up to rounding."""
    b, sq, sk, hq, hkv, d = shape
    gen = torch.Generator().manual_seed(23)
    q = randn((b, sq, hq, d), torch.bfloat16, device, gen)
    k = randn((b, sk, hkv, d), torch.bfloat16, device, gen)
    v = randn((b, sk, hkv, d), torch.bfloat16, device, gen)
    dout = torch.randn((b, sq, hq, d), generator=gen).to(dtype=torch.bfloat16, device=device)
    first = _gradients(q, k, v, dout, deterministic=True, **mask)
    runs = [_gradients(q, k, v, dout, deterministic=True, **mask)]
    if device == "cuda":
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            busy = torch.randn(4096, 4096, device="cuda")
            busy = busy @ busy  # other work in flight while the backward starts
            runs.append(_gradients(q, k, v, dout, deterministic=True, **mask))
        torch.cuda.synchronize()
    for run in runs:
        for name, g, f in zip(("dq", "dk", "dv"), run, first):
            assert torch.equal(g, f), f"{name} differs between deterministic runs"
    for name, g, f in zip(("dq", "dk", "dv"), _gradients(q, k, v, dout, **mask), first):
        torch.testing.assert_close(g, f, rtol=2e-2, atol=2e-2, msg=name)


def test_deterministic_reaches_the_backward_operator(monkeypatch):
    """The flag travels through fwd's autograd formula to bwd (the CPU backward is deterministic
    anyway, so only the operator's arguments tell)."""
    seen = []
    bwd = ccattn._ops.bwd
    monkeypatch.setattr(ccattn._ops, "bwd", lambda *args: seen.append(args[-1]) or bwd(*args))
    gen = torch.Generator().manual_seed(31)
    q, k = (randn((1, 40, 2, 32), torch.bfloat16, "cpu", gen) for _ in range(2))
    for deterministic in (True, False):
        ccattn.attention(q, k, k, causal=True, deterministic=deterministic).sum().backward()
    assert seen == [True, False]


def test_deterministic_varlen(device):
    lens_q, lens_k = [0, 113, 287, 803], [50, 0, 250, 201]
    cu_q = torch.tensor([0] + lens_q).cumsum(0).to(torch.int32).to(device)
    cu_k = torch.tensor([0] + lens_k).cumsum(0).to(torch.int32).to(device)
    q, k, v, dout = _varlen_inputs(lens_q, lens_k, device, 29)

    def grads():
        out = ccattn.attention_varlen(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), causal=True,
                                      compress_factor=4, deterministic=True)
        return torch.autograd.grad(out, (q, k, v), dout)

    first = grads()
    for _ in range(2):
        for name, g, f in zip(("dq", "dk", "dv"), grads(), first):
            assert torch.equal(g, f), f"{name} differs between deterministic runs"


def _varlen_step(q, k, v, dout, cu_q, cu_k, max_q, max_k, validate):
    out = ccattn.attention_varlen(q, k, v, cu_q, cu_k, max_q, max_k, causal=True, compress_factor=4,
                                  diag_offset=-3, validate=validate)
    return (out, *torch.autograd.grad(out, (q, k, v), dout))


def _varlen_inputs(lens_q, lens_k, device, seed, hq=4, hkv=2, d=64):
    gen = torch.Generator().manual_seed(seed)
    tq, tk = sum(lens_q), sum(lens_k)
    q = randn((tq, hq, d), torch.bfloat16, device, gen)
    k = randn((tk, hkv, d), torch.bfloat16, device, gen)
    v = randn((tk, hkv, d), torch.bfloat16, device, gen)
    dout = torch.randn((tq, hq, d), generator=gen).to(dtype=torch.bfloat16, device=device)
    return q, k, v, dout


def test_varlen_without_validation(device):
    """validate=False (nothing copied to the host) computes what the validated call computes, with
    loose bounds too."""
    lens_q, lens_k = [0, 113, 58, 1], [50, 30, 0, 31]
    cu_q = torch.tensor([0] + lens_q).cumsum(0).to(torch.int32).to(device)
    cu_k = torch.tensor([0] + lens_k).cumsum(0).to(torch.int32).to(device)
    inputs = _varlen_inputs(lens_q, lens_k, device, 11)
    want = _varlen_step(*inputs, cu_q, cu_k, max(lens_q), max(lens_k), True)
    for max_q, max_k in ((max(lens_q), max(lens_k)), (200, 64)):
        got = _varlen_step(*inputs, cu_q, cu_k, max_q, max_k, False)
        for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
            torch.testing.assert_close(g, w, rtol=0, atol=0 if name == "out" else 2e-2, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_varlen_cuda_graph_capture_and_replay():
    """A varlen training step (forward and backward) with validate=False captured in a CUDA graph, then
    replayed on new inputs copied into the captured tensors: the eager validated step's results."""
    lens_q, lens_k = [0, 113, 587, 1], [50, 250, 0, 31]
    cu_q = torch.tensor([0] + lens_q).cumsum(0).to(torch.int32).cuda()
    cu_k = torch.tensor([0] + lens_k).cumsum(0).to(torch.int32).cuda()
    bounds = (max(lens_q), max(lens_k))
    static = _varlen_inputs(lens_q, lens_k, "cuda", 12)
    side = torch.cuda.Stream()  # warm-up on a side stream, as torch.cuda.graphs asks
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            _varlen_step(*static, cu_q, cu_k, *bounds, False)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = _varlen_step(*static, cu_q, cu_k, *bounds, False)
    for seed in (13, 14):
        fresh = _varlen_inputs(lens_q, lens_k, "cuda", seed)
        with torch.no_grad():
            for s, f in zip(static, fresh):
                s.copy_(f)
        graph.replay()
        torch.cuda.synchronize()
        want = _varlen_step(*fresh, cu_q, cu_k, *bounds, True)
        for name, g, w in zip(("out", "dq", "dk", "dv"), captured, want):
            torch.testing.assert_close(g, w, rtol=0, atol=0 if name == "out" else 2e-2, msg=name)
