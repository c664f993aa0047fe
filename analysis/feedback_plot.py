"""The feedback figure (like seed 000's Fig. 5): macro vs MD g(r) per corrected channel, and the distance per round."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mummi.core.atomic import atomic_write
from mummi.core.lipids import CHANNEL_NAMES


def plot_feedback(round_files: Sequence[Path], channels: Sequence[int], out: Path) -> Path | None:
    """Draw the first round's macro g(r) and the latest round's macro and MD g(r) into ``out`` (PNG, atomically).

    ``round_files`` are the rounds' ``.npz`` tables in order; None when there is none.
    """
    if not round_files:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first, last = (dict(np.load(f, allow_pickle=False)) for f in (round_files[0], round_files[-1]))
    cols = 5
    rows = -(-(len(channels) + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.8 * rows), squeeze=False)
    axes = axes.ravel()
    for ax, c in zip(axes, channels):
        ax.plot(last["r_nm"], last["g_md"][c], "k-", lw=2, label="MD (DynIm-weighted)")
        ax.plot(first["r_nm"], first["g_macro"][c], "C3--", label="macro, initial")
        ax.plot(last["r_nm"], last["g_macro"][c], "C0-", label=f"macro, round {len(round_files)}")
        ax.set_title(CHANNEL_NAMES[c], fontsize=9)
        ax.set_xlabel("r (nm)")
    axes[0].set_ylabel("g(r)")
    axes[0].legend(fontsize=7)
    distances = [float(np.load(f)["distance"]) for f in round_files]
    ax = axes[len(channels)]
    ax.plot(range(len(distances)), distances, "o-")
    ax.set_xlabel("feedback rounds applied")
    ax.set_ylabel("RMS ln(g_macro/g_MD) (kT)")
    for ax in axes[len(channels) + 1 :]:
        ax.axis("off")
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    return out
