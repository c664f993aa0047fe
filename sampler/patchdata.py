"""Coarse patches as encoder input: per-channel normalisation, rotations, synthetic sets.

The encoder sees 5×5×14 coarse patches (``coarse[p, iy, ix, channel]``, see
:mod:`mummi.macro.patches`). As in seed 000 (Methods, "Encoding of macro
configurations") every channel is scaled by the dynamic range it has over the
training data, and the training data are augmented with the 90°, 180° and 270°
rotations of the 5×5 grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PATCH_SHAPE: tuple[int, int, int] = (5, 5, 14)


def check_coarse(coarse: np.ndarray, shape: tuple[int, int, int] = PATCH_SHAPE, what: str = "coarse") -> np.ndarray:
    """``coarse`` as a float32 array of shape (n, *shape); ValueError naming the bad shape otherwise.

    ``what`` names the patches in the messages ("coarse", "native").
    """
    arr = np.asarray(coarse, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[1:] != tuple(shape):
        msg = f"{what} patches must have shape (n, {', '.join(map(str, shape))}), got {arr.shape}"
        raise ValueError(msg)
    if not np.isfinite(arr).all():
        msg = f"{what} patches contain NaN or infinite values"
        raise ValueError(msg)
    return arr


@dataclass(frozen=True)
class ChannelRange:
    """Per-channel affine normalisation ``(x - low) / span``: :meth:`fit` maps the training data onto [0, 1] (the
    VAE's), :meth:`standardise` gives them zero mean and unit variance (the learned metric's)."""

    low: np.ndarray  # (channels,) float32
    span: np.ndarray  # (channels,) float32, > 0

    @classmethod
    def standardise(cls, patches: np.ndarray) -> ChannelRange:
        """Zero mean and unit standard deviation per channel over ``patches`` (n, ..., channels), as seed 002 scales
        its native patches (Appendix A.2); a constant channel gets span 1."""
        flat = np.asarray(patches).reshape(-1, patches.shape[-1])
        mean = flat.mean(axis=0, dtype=np.float64)
        sq = np.zeros_like(mean)
        for lo in range(0, len(flat), 1 << 20):  # in chunks: native training sets are large
            sq += np.sum((flat[lo : lo + (1 << 20)] - mean) ** 2, axis=0)
        std = np.sqrt(sq / max(len(flat), 1))
        std[std <= 0] = 1.0
        return cls(low=mean.astype(np.float32), span=std.astype(np.float32))

    @classmethod
    def fit(cls, coarse: np.ndarray) -> ChannelRange:
        """The dynamic range of every channel over ``coarse`` (n, 5, 5, channels); a constant channel gets span 1."""
        flat = np.asarray(coarse, dtype=np.float64).reshape(-1, coarse.shape[-1])
        low, high = flat.min(axis=0), flat.max(axis=0)
        span = high - low
        span[span <= 0] = 1.0
        return cls(low=low.astype(np.float32), span=span.astype(np.float32))

    def apply(self, coarse: np.ndarray) -> np.ndarray:
        return ((np.asarray(coarse, dtype=np.float32) - self.low) / self.span).astype(np.float32, copy=False)

    def invert(self, normalised: np.ndarray) -> np.ndarray:
        return (np.asarray(normalised, dtype=np.float32) * self.span + self.low).astype(np.float32, copy=False)

    def to_json(self) -> dict[str, list[float]]:
        return {"low": [float(v) for v in self.low], "span": [float(v) for v in self.span]}

    @classmethod
    def from_json(cls, data: dict[str, list[float]], channels: int) -> ChannelRange:
        low = np.asarray(data["low"], dtype=np.float32)
        span = np.asarray(data["span"], dtype=np.float32)
        if low.shape != (channels,) or span.shape != (channels,) or not (span > 0).all():
            msg = f"normalisation needs {channels} lows and {channels} positive spans, got {low.shape} and {span.shape}"
            raise ValueError(msg)
        return cls(low=low, span=span)


def with_rotations(coarse: np.ndarray) -> np.ndarray:
    """``coarse`` followed by its 90°, 180° and 270° rotations of the (iy, ix) grid: 4n patches."""
    return np.concatenate([np.rot90(coarse, k, axes=(1, 2)) for k in range(4)]).astype(np.float32, copy=False)


def synthetic_coarse_patches(n: int, seed: int = 0, factors: int = 4, noise: float = 0.01) -> np.ndarray:
    """``n`` coarse patches (n, 5, 5, 14) from a low-dimensional generative model with spatial structure.

    Each patch is a channel background plus ``factors`` smooth spatial modes
    (a Gaussian bump at a random place and smooth gradients), each mode with its own
    channel loading, weighted by standard normal factors, plus a little white noise.
    Channels have different offsets and ranges, as real lipid concentrations do.
    """
    rng = np.random.default_rng(seed)
    ny, nx, nc = PATCH_SHAPE
    y, x = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    base = rng.uniform(0.1, 2.0, nc).astype(np.float32)
    scale = rng.uniform(0.05, 0.5, nc).astype(np.float32)
    loadings = rng.normal(size=(factors, nc)).astype(np.float32)
    z = rng.normal(size=(n, factors)).astype(np.float32)
    cx, cy = rng.uniform(-1, 1, (2, n, 1, 1)).astype(np.float32)
    bump = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.5)  # (n, 5, 5): where RAS perturbs the lipids
    modes = [bump, x[None] * np.ones((n, 1, 1)), y[None] * np.ones((n, 1, 1)), bump * (x - cx)]
    fields = np.zeros((n, ny, nx, nc), dtype=np.float32)
    for k in range(factors):
        fields += (z[:, k, None, None] * modes[k % len(modes)])[..., None] * loadings[k]
    fields = base + scale * fields + noise * rng.normal(size=fields.shape).astype(np.float32)
    return fields.astype(np.float32)
