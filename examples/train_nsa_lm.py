"""Train a tiny causal language model whose attention is NSA's compressed branch plus a sliding window.

Data: synthetic sequences with structure at two ranges. A sequence starts with a marker token that
names its topic; every topic is its own sparse Markov chain over the vocabulary. The next token
depends on the previous one (local: the sliding window sees it) and on the topic, which the marker
states once at position 0 (global: beyond the window, only the compressed branch reads the pooled
block that holds it). Two floors are printed: what the previous token alone allows, and what the
topic adds; a loss below the first means the model uses long-range context.

    python examples/train_nsa_lm.py                          # GPU, a few hundred steps
    python examples/train_nsa_lm.py --device cpu --steps 40 --seq 128 --batch 8 --dim 128
    python examples/train_nsa_lm.py --compile                # torch.compile(model, fullgraph=True)

The compressed branch uses the leak-free band (compress_factor = stride, diag_offset = -(block - 1)),
so the loss it reaches is honest; with the seed's default diag_offset = 0 pooled blocks would show
the model future tokens.
"""

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

import ccattn
from ccattn.nsa import CompressedAttention


class TopicMarkovData:
    """Sequences ``[marker(topic), x1, x2, ...]``: x1 uniform, then the topic's Markov chain, in
    which each token has ``fanout`` possible successors. Tokens ``vocab - topics ..`` are markers."""

    def __init__(self, vocab, topics, fanout, seed):
        self.words, self.topics = vocab - topics, topics
        self.gen = torch.Generator().manual_seed(seed)
        successors = torch.stack([torch.randperm(self.words, generator=self.gen)[:fanout]
                                  for _ in range(topics * self.words)]).view(topics, self.words, fanout)
        logits = torch.full((topics, self.words, self.words), -math.inf)
        logits.scatter_(2, successors, torch.randn(topics, self.words, fanout, generator=self.gen))
        self.probs = logits.softmax(-1)  # [topics, words, words]

    def floors(self):
        """Per-token entropy (nats) of the next token given the previous one, without and with the
        topic: the best losses a model can reach with local context only, and with the marker."""
        def entropy(p):
            return float(-(p * p.clamp_min(1e-30).log()).sum(-1).mean())
        return entropy(self.probs.mean(0)), entropy(self.probs)

    def batch(self, batch, seq):
        topic = torch.randint(self.topics, (batch,), generator=self.gen)
        tokens = torch.empty(batch, seq + 1, dtype=torch.long)
        tokens[:, 0] = self.words + topic
        tokens[:, 1] = torch.randint(self.words, (batch,), generator=self.gen)
        for t in range(1, seq):
            tokens[:, t + 1] = torch.multinomial(self.probs[topic, tokens[:, t]], 1, generator=self.gen)[:, 0]
        return tokens[:, :-1], tokens[:, 1:]


class Attention(nn.Module):
    """NSA-style: a gated sum of the compressed branch and a causal sliding window, shared K/V."""

    def __init__(self, dim, heads, kv_heads, window, block, stride):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.window = heads, kv_heads, dim // heads, window
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * kv_heads * self.head_dim, bias=False)
        self.gate = nn.Linear(dim, 2 * heads)
        self.o = nn.Linear(dim, dim, bias=False)
        self.compressed = CompressedAttention(self.head_dim, block_size=block, stride=stride, compression="mlp")

    def forward(self, x):
        b, s, _ = x.shape
        q = self.q(x).view(b, s, self.heads, self.head_dim).to(torch.bfloat16)
        k, v = self.kv(x).view(b, s, 2, self.kv_heads, self.head_dim).to(torch.bfloat16).unbind(2)
        compressed, _ = self.compressed(q, k, v)
        local = ccattn.attention(q, k, v, causal=True, window_left=self.window)
        gate = torch.sigmoid(self.gate(x)).view(b, s, self.heads, 2, 1)
        y = gate[:, :, :, 0] * compressed.float() + gate[:, :, :, 1] * local.float()
        return self.o(y.reshape(b, s, -1))


class Block(nn.Module):
    def __init__(self, dim, **attn):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(dim), nn.RMSNorm(dim)
        self.attn = Attention(dim, **attn)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    def __init__(self, vocab, seq, dim, layers, **attn):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(seq, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, **attn) for _ in range(layers))
        self.norm = nn.RMSNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def arguments(description=__doc__):
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--dim", type=int, default=256, help="model width; heads of 64")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--window", type=int, default=32, help="sliding-window branch: keys to the left")
    parser.add_argument("--block", type=int, default=32, help="NSA block length l")
    parser.add_argument("--stride", type=int, default=16, help="NSA block stride d")
    parser.add_argument("--vocab", type=int, default=128)
    parser.add_argument("--topics", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="torch.compile(model, fullgraph=True)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def train(args):
    """The data and the model after args.steps steps of AdamW."""
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    data = TopicMarkovData(args.vocab, args.topics, fanout=4, seed=args.seed)
    model = TinyLM(args.vocab, args.seq, args.dim, args.layers, heads=args.dim // 64, kv_heads=max(1, args.dim // 128),
                   window=args.window, block=args.block, stride=args.stride).to(device)
    step_fn = torch.compile(model, fullgraph=True) if args.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)

    params = sum(p.numel() for p in model.parameters())
    print(f"device {device}, {params / 1e6:.2f}M parameters, batch {args.batch} x {args.seq} tokens; "
          f"NSA blocks l={args.block} d={args.stride} (leak-free diag_offset={-(args.block - 1)}), "
          f"window {args.window}")
    local, with_topic = data.floors()
    print(f"loss at chance ln({args.vocab}) = {math.log(args.vocab):.3f}; best with the previous token only "
          f"≈ {local:.3f}, with the topic too ≈ {with_topic:.3f}")
    start, first, last = time.time(), None, None
    for step in range(1, args.steps + 1):
        tokens, targets = (t.to(device) for t in data.batch(args.batch, args.seq))
        logits = step_fn(tokens)
        loss = F.cross_entropy(logits.reshape(-1, args.vocab).float(), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        last = loss.item()
        first = last if first is None else first
        if step % args.log_every == 0 or step == 1 or step == args.steps:
            print(f"step {step:5d}  loss {last:.4f}  ({time.time() - start:.1f} s)", flush=True)
    print(f"loss {first:.3f} -> {last:.3f} in {args.steps} steps")
    return data, model


def main():
    train(arguments().parse_args())


if __name__ == "__main__":
    main()
