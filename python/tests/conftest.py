import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.bfloat16, torch.float16]
# (Dqk, Dv) pairs the GPU kernels are built for; the CPU backend takes any head dims.
GPU_HEAD_DIMS = {(64, 64), (128, 128), (192, 128), (256, 256)}


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(params=DTYPES, ids=["bf16", "fp16"])
def dtype(request):
    return request.param


def skip_unsupported_dims(device, dqk, dv):
    if device == "cuda" and (dqk, dv) not in GPU_HEAD_DIMS:
        pytest.skip(f"the GPU kernels have no head dims {dqk}/{dv}")
