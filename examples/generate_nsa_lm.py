"""Generate tokens from the example NSA language model (examples/train_nsa_lm.py) with KV caches.

Trains the model briefly, then decodes one token at a time with ccattn.attention_with_kvcache:
  sliding-window branch: a contiguous cache of raw keys and values; each step appends its row and
      attends with causal=True, window_left=window (cf 1: the default delta puts the query last).
  compressed branch: a paged cache (pages of 16 compressed keys, in random order) of NSA blocks;
      when a step completes a block (raw positions t-l+1 .. t) it is compressed and appended in the
      same call, and query t attends with the leak-free band (compress_factor=d,
      diag_offset=-(l-1)) placed by query_pos=t.
Nothing is read back to the host in a step but the sampled token. At the end the cached logits are
compared with the full forward of the generated sequence (they must agree to bf16 rounding), and the
fraction of generated tokens that follow the prompt's topic chain is printed.

    python examples/generate_nsa_lm.py                              # GPU
    python examples/generate_nsa_lm.py --device cpu --steps 40 --seq 128 --batch 8 --dim 128 --new 60
"""

import torch

import ccattn
from train_nsa_lm import arguments, train


class LayerCache:
    """One layer's caches: raw K/V (window branch) and paged compressed K/V (NSA branch)."""

    def __init__(self, attn, batch, capacity, device, page=16):
        hkv, d = attn.kv_heads, attn.head_dim
        bf16 = dict(dtype=torch.bfloat16, device=device)
        self.k = torch.zeros(batch, capacity, hkv, d, **bf16)
        self.v = torch.zeros_like(self.k)
        blocks = max(1, (capacity - attn.compressed.block_size) // attn.compressed.stride + 1)
        pages = -(-blocks // page)
        self.page_table = torch.randperm(batch * pages, device=device).to(torch.int32).view(batch, pages)
        self.k_cmp = torch.zeros(batch * pages, page, hkv, d, **bf16)
        self.v_cmp = torch.zeros_like(self.k_cmp)
        self.blocks = torch.zeros(batch, dtype=torch.int32, device=device)  # compressed keys so far


def attention_step(attn, x, t, cache, lengths):
    """The layer's attention for the token at position t (x [B, 1, dim]); lengths: int32 [B] = t."""
    b = x.shape[0]
    q = attn.q(x).view(b, 1, attn.heads, attn.head_dim).to(torch.bfloat16)
    k, v = attn.kv(x).view(b, 1, 2, attn.kv_heads, attn.head_dim).to(torch.bfloat16).unbind(2)
    local = ccattn.attention_with_kvcache(q, cache.k, cache.v, lengths, k=k, v=v, causal=True, window_left=attn.window)
    nsa = attn.compressed
    l, d = nsa.block_size, nsa.stride
    new = {}
    if t >= l - 1 and (t - (l - 1)) % d == 0:  # raw positions t-l+1 .. t form block (t-l+1) / d
        new = dict(k=nsa.compress_k(cache.k[:, t - l + 1 : t + 1].transpose(1, 2)[:, None]),
                   v=nsa.compress_v(cache.v[:, t - l + 1 : t + 1].transpose(1, 2)[:, None]))
    position = torch.full_like(lengths, t)
    compressed = ccattn.attention_with_kvcache(q, cache.k_cmp, cache.v_cmp, cache.blocks, page_table=cache.page_table,
                                               query_pos=position, causal=True, compress_factor=d,
                                               diag_offset=-(l - 1), **new)
    if new:
        cache.blocks += 1
    gate = torch.sigmoid(attn.gate(x)).view(b, 1, attn.heads, 2, 1)
    y = gate[:, :, :, 0] * compressed.float() + gate[:, :, :, 1] * local.float()
    return attn.o(y.reshape(b, 1, -1))


@torch.no_grad()
def generate(model, prompt, new_tokens):
    """prompt [B, P] -> (tokens [B, P + new_tokens], logits of every position [B, P + new_tokens - 1, V])."""
    b, device = prompt.shape[0], prompt.device
    total = prompt.shape[1] + new_tokens
    caches = [LayerCache(block.attn, b, total, device) for block in model.blocks]
    tokens, logits = prompt, []
    lengths = torch.zeros(b, dtype=torch.int32, device=device)
    for t in range(total - 1):
        x = model.embed(tokens[:, t : t + 1]) + model.pos[t]
        for block, cache in zip(model.blocks, caches):
            x = x + attention_step(block.attn, block.norm1(x), t, cache, lengths)
            x = x + block.mlp(block.norm2(x))
        lengths += 1
        step = model.head(model.norm(x))[:, 0]
        logits.append(step)
        if t + 1 >= prompt.shape[1]:
            nxt = torch.multinomial(step.float().softmax(-1), 1)
            tokens = torch.cat([tokens, nxt], dim=1)
    return tokens, torch.stack(logits, dim=1)


def main():
    parser = arguments(__doc__)
    parser.add_argument("--new", type=int, default=200, help="tokens to generate (prompt: marker + one token)")
    args = parser.parse_args()
    data, model = train(args)
    model.eval()
    total = min(args.seq, 2 + args.new)
    prompt, _ = data.batch(4, 2)
    tokens, logits = generate(model, prompt.to(args.device), total - 2)
    with torch.no_grad():
        full = model(tokens[:, :-1])
    err = (logits.float() - full.float()).abs().max().item()
    print(f"generated {tokens.shape[1] - 2} tokens per sequence with KV caches; cached vs full-forward logits: "
          f"max |diff| {err:.3e} (of max |logit| {full.abs().max().item():.1f})")
    topic = tokens[:, 0] - data.words
    prev, nxt = tokens[:, 1:-1], tokens[:, 2:]
    words = (prev < data.words) & (nxt < data.words)  # a marker token is never a step of a chain
    probs = data.probs.to(tokens.device)[topic[:, None], prev.clamp(max=data.words - 1), nxt.clamp(max=data.words - 1)]
    print(f"generated transitions allowed by the prompt's topic: {((probs > 0) & words).float().mean().item():.1%}")


if __name__ == "__main__":
    main()
