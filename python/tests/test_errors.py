"""Bad input raises a Python exception that names the argument."""

import pytest
import torch

import ccattn
from conftest import DEVICES


def tensors(device, b=1, sq=9, sk=5, hq=4, hkv=2, d=64, dtype=torch.bfloat16):
    return (torch.randn(b, sq, hq, d, dtype=dtype, device=device), torch.randn(b, sk, hkv, d, dtype=dtype, device=device),
            torch.randn(b, sk, hkv, d, dtype=dtype, device=device))


def raises(exc, argument, fn, *args, **kwargs):
    with pytest.raises(exc, match=f"'{argument}'"):
        fn(*args, **kwargs)


def test_tensor_arguments(device):
    q, k, v = tensors(device)
    raises(ValueError, "q", ccattn.attention, q.float(), k, v)                       # dtype
    raises(ValueError, "k", ccattn.attention, q, k.half(), v)                        # dtype mix
    raises(ValueError, "k", ccattn.attention, q[:, :, :3], k, v)                     # Hq % Hkv
    raises(ValueError, "v", ccattn.attention, q, k, v[:, :4])                        # Sk mismatch
    raises(ValueError, "k", ccattn.attention, q, k[..., :32], v)                     # Dqk mismatch
    raises(ValueError, "q", ccattn.attention, q[0], k, v)                            # rank
    raises(TypeError, "v", ccattn.attention, q, k, v.tolist())
    raises(ValueError, "q", ccattn.attention, q.to(torch.float64), k, v)


def test_mask_arguments(device):
    q, k, v = tensors(device)
    raises(ValueError, "compress_factor", ccattn.attention, q, k, v, compress_factor=0)
    raises(TypeError, "compress_factor", ccattn.attention, q, k, v, compress_factor=2.0)
    raises(ValueError, "window_left", ccattn.attention, q, k, v, causal=True, window_left=-1)
    raises(TypeError, "diag_offset", ccattn.attention, q, k, v, diag_offset=1.5)
    raises(TypeError, "causal", ccattn.attention, q, k, v, causal=1)
    raises(TypeError, "deterministic", ccattn.attention, q, k, v, deterministic=1)
    raises(ValueError, "scale", ccattn.attention, q, k, v, scale=float("nan"))


def test_operator_checks_too(device):
    """The C++ operator validates on its own (torch.compile calls it directly) and names arguments
    as the Python API does."""
    q, k, v = tensors(device)
    raises(ValueError, "compress_factor", torch.ops.ccattn.fwd, q, k, v, None, None, True, 0, None, None, None)
    raises(ValueError, "window_left", torch.ops.ccattn.fwd, q, k, v, None, None, True, 1, None, -2, None)
    raises(ValueError, "q", torch.ops.ccattn.fwd, q.float(), k, v, None, None, True, 1, None, None, None)
    out, lse = torch.ops.ccattn.fwd(q, k, v, None, None, True, 2, None, None, None)
    raises(ValueError, "dout", torch.ops.ccattn.bwd, out[:, :3], q, k, v, out, lse, None, None, True, 2, None, None,
           None)
    raises(ValueError, "lse", torch.ops.ccattn.bwd, out, q, k, v, out, lse[:, :1], None, None, True, 2, None, None,
           None)


def test_varlen_arguments(device):
    q, k, v = (t[0] for t in tensors(device, sq=9, sk=5))
    cu_q = torch.tensor([0, 4, 9], dtype=torch.int32, device=device)
    cu_k = torch.tensor([0, 2, 5], dtype=torch.int32, device=device)
    ccattn.attention_varlen(q, k, v, cu_q, cu_k, 5, 3, causal=True)
    raises(ValueError, "cu_seqlens_q", ccattn.attention_varlen, q, k, v, cu_q.flip(0), cu_k, 5, 3)
    raises(ValueError, "cu_seqlens_k", ccattn.attention_varlen, q, k, v, cu_q, cu_k + 1, 5, 3)
    raises(ValueError, "cu_seqlens_q", ccattn.attention_varlen, q, k, v, cu_q.long(), cu_k, 5, 3)
    raises(ValueError, "cu_seqlens_k", ccattn.attention_varlen, q, k, v, cu_q, cu_k[:2], 5, 3)
    raises(ValueError, "max_seqlen_q", ccattn.attention_varlen, q, k, v, cu_q, cu_k, -1, 3)
    raises(ValueError, "max_seqlen_q", ccattn.attention_varlen, q, k, v, cu_q, cu_k, 4, 3)  # below the longest
    raises(ValueError, "max_seqlen_k", ccattn.attention_varlen, q, k, v, cu_q, cu_k, 5, 2)
    raises(TypeError, "validate", ccattn.attention_varlen, q, k, v, cu_q, cu_k, 5, 3, validate=1)
    raises(ValueError, "q", ccattn.attention_varlen, q[None], k, v, cu_q, cu_k, 5, 3)


def test_unvalidated_host_cu_seqlens_are_checked_anyway():
    """validate=False only skips the device-to-host copy: CPU tensors are checked all the same."""
    q, k, v = (t[0] for t in tensors("cpu", sq=9, sk=5))
    cu_q = torch.tensor([0, 4, 9], dtype=torch.int32)
    cu_k = torch.tensor([0, 2, 5], dtype=torch.int32)
    ccattn.attention_varlen(q, k, v, cu_q, cu_k, 5, 3, validate=False)
    raises(ValueError, "cu_seqlens_q", ccattn.attention_varlen, q, k, v, cu_q.flip(0), cu_k, 9, 5, validate=False)
    raises(ValueError, "max_seqlen_q", ccattn.attention_varlen, q, k, v, cu_q, cu_k, 4, 3, validate=False)


def test_scale_beyond_float32(device):
    q, k, v = tensors(device)
    raises(ValueError, "scale", ccattn.attention, q, k, v, scale=1e40)


@pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA device")
def test_cuda_arguments():
    q, k, v = tensors("cuda")
    raises(ValueError, "k", ccattn.attention, q, k.cpu(), v)
    cu = torch.tensor([0, 9], dtype=torch.int32)
    raises(ValueError, "cu_seqlens_q", ccattn.attention_varlen, q[0], k[0], v[0], cu, cu.cuda(), 9, 5)
    q, k, v = tensors("cuda", d=72)  # no GPU kernel for head dim 72
    with pytest.raises((NotImplementedError, ValueError), match="'q'|'v'"):
        ccattn.attention(q, k, v)
