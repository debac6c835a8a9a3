"""Draws docs/band_tensors/*.png: each mask of ccattn.bands, from the tensors the helpers return.

Run with any Python that has torch and matplotlib (the extension is not needed):
    python scripts/draw_band_masks.py
"""

import importlib.util
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "band_tensors"

# ccattn/bands.py alone: importing the package would load the compiled extension.
spec = importlib.util.spec_from_file_location("bands", ROOT / "python" / "ccattn" / "bands.py")
bands = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bands)


def visible(lo, hi, sk):
    """The mask exactly as the library reads band tensors: [lo, hi) clamped to [0, Sk)."""
    j = torch.arange(sk)
    return (lo.long().clamp(0, sk)[:, None] <= j) & (j < hi.long().clamp(0, sk)[:, None])


def draw(name, title, lo, hi, sk, xlabel="key"):
    fig, ax = plt.subplots(figsize=(3.2, 3.2 * len(lo) / max(sk, len(lo)) + 0.6), dpi=100)
    ax.imshow(visible(lo, hi, sk), cmap="Blues", interpolation="nearest", vmin=0, vmax=1.3)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("query", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(OUT / f"{name}.png")
    plt.close(fig)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    draw("prefix_lm", "prefix_lm(48, prefix=16)", *bands.prefix_lm(48, 16), 48)
    draw("chunked", "chunked(48, chunk=12)", *bands.chunked(48, 12), 48)
    draw("documents", "documents([20, 8, 20])", *bands.documents([20, 8, 20]), 48)
    lengths, block, stride = [20, 8, 20], 4, 2
    keys = sum(bands.nsa_blocks(n, block, stride) for n in lengths)
    draw("nsa_documents", f"nsa_documents({lengths}, block={block}, stride={stride})",
         *bands.nsa_documents(lengths, block, stride), keys, xlabel="compressed key")


if __name__ == "__main__":
    main()
