"""Synthetic latent streams for benchmarks and tests: Gaussian modes plus a uniform part."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class MixtureStream:
    """Points drawn i.i.d. from ``n_modes`` Gaussians and a uniform box.

    Each mode has a random centre in ``[-spread, spread]^dim``, a random orientation
    and principal standard deviations ``decay**i`` (i = 0 .. dim-1), so ``decay`` < 1
    gives the lower intrinsic dimension typical of trained latent spaces and
    ``decay = 1`` isotropic modes. A fraction ``uniform`` of the points is uniform in
    ``[-1.5 spread, 1.5 spread]^dim`` (the rare configurations).
    """

    def __init__(
        self,
        dim: int = 15,
        n_modes: int = 8,
        uniform: float = 0.02,
        decay: float = 0.85,
        spread: float = 4.0,
        seed: int = 0,
    ) -> None:
        self.dim, self.uniform, self.spread = dim, uniform, spread
        self._rng = np.random.default_rng(seed)
        self.centres = self._rng.uniform(-spread, spread, (n_modes, dim))
        q = np.linalg.qr(self._rng.normal(size=(n_modes, dim, dim)))[0]
        self.axes = q * (decay ** np.arange(dim))[None, None, :]  # columns scaled

    def draw(self, n: int) -> np.ndarray:
        rng = self._rng
        mode = rng.integers(len(self.centres), size=n)
        z = rng.normal(size=(n, self.dim))
        x = np.einsum("nij,nj->ni", self.axes[mode], z) + self.centres[mode]
        rare = rng.random(n) < self.uniform
        x[rare] = rng.uniform(-1.5 * self.spread, 1.5 * self.spread, (int(rare.sum()), self.dim))
        return x.astype(np.float32)

    def batches(self, total: int, batch: int) -> Iterator[np.ndarray]:
        for start in range(0, total, batch):
            yield self.draw(min(batch, total - start))


def two_gaussians_and_uniform(rng: np.random.Generator, n_gauss: int = 4800, n_uniform: int = 400) -> np.ndarray:
    """The 2-D data of the paper's convergence study (seed 000, Fig. 6), as in the DynIm examples.

    Two Gaussians (means (6, 6) and (0, 0)) of ``n_gauss`` points each and ``n_uniform``
    points uniform in [-5, 7] x [-2, 10].
    """
    a = rng.multivariate_normal([6.0, 6.0], [[1.0, 0.8], [0.8, 3.0]], n_gauss)
    b = rng.multivariate_normal([0.0, 0.0], [[2.0, 0.0], [0.0, 1.0]], n_gauss)
    u = rng.uniform([-5.0, -2.0], [7.0, 10.0], (n_uniform, 2))
    return np.concatenate([a, b, u]).astype(np.float32)


def schedule(total: int, selections: int, batch: int) -> list[tuple[int, int]]:
    """(arrivals, selections) per step: batches of ``batch`` arrivals, each followed by an equal share of the bursts."""
    n_steps = -(-total // batch)
    adds = [min(batch, total - i * batch) for i in range(n_steps)]
    picks = np.diff(np.linspace(0, selections, n_steps + 1).round().astype(int)).tolist()
    return list(zip(adds, picks))
