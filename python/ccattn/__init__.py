"""ccattn for PyTorch: attention with compressed-KV band masks, forward and backward, on CPU and CUDA.

``ccattn.attention_with_kvcache`` attends new queries over a (paged) KV cache for inference.
``ccattn.attention`` / ``ccattn.attention_varlen`` (flash-attn's layout) are differentiable and
trace under ``torch.compile(fullgraph=True)``; they run the C++ library through the torch operators
``torch.ops.ccattn.fwd`` / ``bwd``. ``ccattn.nsa.CompressedAttention`` is the compressed branch of
Native Sparse Attention. ``ccattn.bands`` builds band tensors (``band=(lo, hi)``) for prefix-LM,
chunked attention, packed documents and NSA compressed keys per document. The mask contract is
docs/semantics.md; ``help(ccattn.functional)`` shows the conventions and the warning about the
default ``diag_offset`` with pooled keys. ``ccattn.distributed`` runs the same attention over a
sequence sharded across the ranks of a ``torch.distributed`` process group (context parallelism;
docs/context_parallel.md).
"""

from . import bands, distributed, functional, nsa
from .functional import attention, attention_varlen, attention_with_kvcache

__all__ = ["attention", "attention_varlen", "attention_with_kvcache", "bands", "distributed", "functional", "nsa"]
__version__ = "0.1.0"
