"""The learned patch metric of seed 002 ("A Biology-Informed Similarity Metric for Simulated Patches of Human Cell
Membrane"): network, transformations, the radial-profile feature Υ, the three losses, and :class:`MetricEncoder`.

A network maps a native patch (P×P×14, per-channel standardised) to z in R^d
(d = 9) whose Euclidean distance d_z is the similarity DynIm samples by. It is
trained on a weighted sum of three losses (Section 4):

* invariance, ``L_inv``: a hard-triplet loss with margin α_inv that puts each
  patch's five transformations (:data:`TRANSFORMS`: three quarter turns, the
  horizontal and the vertical reflection) closer to it than any other patch of the
  batch (online mining: the transformations are made per batch);
* radial-profile proportionality, ``L_rad``: ``|d_z(x_i, x_j) − λ_rad d_Υ(x_i, x_j)|``
  over the pairs of a batch, Υ the radial profile of :func:`radial_profiles`;
* label separation, ``L_lab``: a hard-triplet loss with margin α_lab between patches
  of different protein-constellation classes (:mod:`mummi.sampler.metric_data`).

The network is the paper's (Appendix A.2): SeparableConv2D(6 filters, depth
multiplier 6, kernel 1, ReLU) → BatchNorm → Conv2D(16, 3, stride 2, ReLU) →
BatchNorm → Conv2D(16, 3, stride 2, ReLU) → BatchNorm → Flatten → Dense(d) →
BatchNorm → z. Saved and loaded like the VAE (:mod:`mummi.sampler.encoder`), as kind
``metric``.

The patches are standardised per channel (zero mean, unit variance over the
training patches, as in Appendix A.2), not scaled to [0, 1] as for the VAE: so d_Υ
spans about 3–62 on our macro model's patches, the range (Fig. 3, 0–60) for which
the paper chose λ_rad = 0.1.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from mummi.sampler.architecture import JsonArchitecture
from mummi.sampler.encoder import TorchEncoder
from mummi.sampler.patchdata import check_coarse

TRANSFORMS: tuple[str, ...] = ("rot90", "rot180", "rot270", "flip_h", "flip_v")
"""The transformations the metric is invariant to, in the order :func:`transform` and :func:`with_transforms` use."""
CPU_CHUNK = 128
"""The most native patches :meth:`MetricEncoder.encode` puts through the network at once on CPU."""


# ---------------------------------------------------------------------------- transformations
def transform(x: np.ndarray, name: str) -> np.ndarray:
    """Patches ``x`` (n, P, P, channels) under transformation ``name`` (one of :data:`TRANSFORMS`).

    ``rot90`` turns the (iy, ix) grid a quarter counter-clockwise (``np.rot90``);
    ``flip_h`` mirrors left–right (ix), ``flip_v`` top–bottom (iy).
    """
    if name.startswith("rot") and name in TRANSFORMS:
        return np.rot90(x, int(name[3:]) // 90, axes=(1, 2))
    if name == "flip_h":
        return x[:, :, ::-1]
    if name == "flip_v":
        return x[:, ::-1]
    msg = f"unknown transformation {name!r}; known: {TRANSFORMS}"
    raise ValueError(msg)


def with_transforms(x: torch.Tensor) -> torch.Tensor:
    """``x`` (n, P, P, c) followed by its five transformations, block by block: (6n, P, P, c)."""
    return torch.cat(
        [
            x,
            torch.rot90(x, 1, dims=(1, 2)),
            torch.rot90(x, 2, dims=(1, 2)),
            torch.rot90(x, 3, dims=(1, 2)),
            torch.flip(x, dims=(2,)),
            torch.flip(x, dims=(1,)),
        ]
    )


# ---------------------------------------------------------------------------- radial profiles
@functools.cache
def _profile_rings(grid: int) -> tuple[tuple[np.ndarray, ...], ...]:
    """Flat pixel indices of each ring, per reference: the centre, then the four corners within their quadrants.

    Ring r of a reference holds the pixels whose distance from it, rounded to the
    nearest integer, is r (r < ``grid // 2 + 1``: 19 rings for 37 pixels).
    """
    if grid < 3 or grid % 2 == 0:
        msg = f"radial profiles need an odd patch edge of at least 3 pixels, got {grid}"
        raise ValueError(msg)
    h = grid // 2
    iy, ix = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    references = [(h, h, np.ones((grid, grid), bool))]
    for cy in (0, grid - 1):
        for cx in (0, grid - 1):
            quadrant = ((iy <= h) if cy == 0 else (iy >= h)) & ((ix <= h) if cx == 0 else (ix >= h))
            references.append((cy, cx, quadrant))
    rings = []
    for cy, cx, region in references:
        r = np.rint(np.hypot(iy - cy, ix - cx)).astype(np.int64)
        rings.append(tuple(np.flatnonzero((r == k) & region) for k in range(h + 1)))
    return tuple(rings)


def radial_profiles(x: np.ndarray, channels: list[int] | tuple[int, ...] | None = None) -> np.ndarray:
    """The radial-profile feature Υ of patches ``x`` (n, P, P, c), (n, len(channels)·2R), float32, R = P // 2 + 1.

    Per channel: the max over each ring around the centre pixel (R values), then the
    mean over the four corners of their max over each ring within the corner's
    quadrant (R values); channel after channel (seed 002, Section 4 and Appendix A.1;
    38 values per channel for P = 37). Invariant to :data:`TRANSFORMS` by construction.
    """
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] != x.shape[2]:
        msg = f"patches must have shape (n, P, P, channels), got {x.shape}"
        raise ValueError(msg)
    chosen = list(range(x.shape[-1])) if channels is None else list(channels)
    flat = x.reshape(len(x), -1, x.shape[-1])[:, :, chosen].astype(np.float32, copy=False)
    rings = _profile_rings(x.shape[1])
    centre = np.stack([flat[:, ring].max(axis=1) for ring in rings[0]], axis=-1)  # (n, channels, R)
    corners = np.mean(
        [np.stack([flat[:, ring].max(axis=1) for ring in corner], axis=-1) for corner in rings[1:]], axis=0
    )
    return np.concatenate([centre, corners], axis=-1).reshape(len(x), -1).astype(np.float32)


# ---------------------------------------------------------------------------- network
@dataclass(frozen=True)
class MetricArchitecture(JsonArchitecture):
    """Everything needed to rebuild the network (saved in the model's JSON manifest)."""

    grid: int = 37
    channels: int = 14
    latent_dim: int = 9
    depth_multiplier: int = 6
    mix_filters: int = 6
    conv_filters: tuple[int, ...] = field(default=(16, 16))
    kernel: int = 3
    stride: int = 2

    def feature_side(self) -> int:
        """The edge of the last convolution's output (8 for the paper's 37-pixel patches)."""
        side = self.grid
        for _ in self.conv_filters:
            side = (side - self.kernel) // self.stride + 1
        if side < 1:
            msg = f"a {self.grid}-pixel patch is too small for {len(self.conv_filters)} convolutions of {self.kernel}"
            raise ValueError(msg)
        return side


class PatchMetricNet(nn.Module):
    """Input (batch, P, P, channels) standardised native patches; output z (batch, latent_dim).

    The separable convolution has 1×1 kernels and no activation between its
    depthwise and pointwise halves, so it is one linear map of the channels: it keeps
    the paper's two weight tensors but applies their product (:meth:`mixing`), which
    spares the 84 full-resolution intermediate maps (:meth:`separable` is the
    literal two-step form).
    """

    def __init__(self, arch: MetricArchitecture) -> None:
        super().__init__()
        self.arch = arch
        c = arch.channels
        self.depthwise = nn.Conv2d(c, c * arch.depth_multiplier, kernel_size=1, groups=c, bias=False)
        self.pointwise = nn.Conv2d(c * arch.depth_multiplier, arch.mix_filters, kernel_size=1)
        layers: list[nn.Module] = [nn.ReLU(), nn.BatchNorm2d(arch.mix_filters)]
        width = arch.mix_filters
        for filters in arch.conv_filters:
            layers += [nn.Conv2d(width, filters, arch.kernel, stride=arch.stride), nn.ReLU(), nn.BatchNorm2d(filters)]
            width = filters
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(width * arch.feature_side() ** 2, arch.latent_dim), nn.BatchNorm1d(arch.latent_dim)
        )

    def mixing(self) -> torch.Tensor:
        """The separable convolution as one (mix_filters, channels) matrix."""
        a = self.arch
        depth = self.depthwise.weight[:, 0, 0, 0]  # (channels · multiplier,): output j reads input j // multiplier
        w = self.pointwise.weight[:, :, 0, 0] * depth[None, :]
        return w.reshape(a.mix_filters, a.channels, a.depth_multiplier).sum(-1)

    def separable(self, x: torch.Tensor) -> torch.Tensor:
        """The separable convolution step by step (the reference for :meth:`forward`'s fused form), NCHW out."""
        return self.pointwise(self.depthwise(x.permute(0, 3, 1, 2)))

    def mixing_bias(self) -> torch.Tensor:
        bias = self.pointwise.bias
        assert bias is not None  # built with a bias
        return bias

    def trunk(self, mixed: torch.Tensor) -> torch.Tensor:
        """z of the channel-mixed maps (batch, P, P, mix_filters): everything after the separable convolution."""
        return self.head(self.features(mixed.permute(0, 3, 1, 2).contiguous()))  # NCHW: faster batch norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x @ self.mixing().T + self.mixing_bias())


# ---------------------------------------------------------------------------- losses
def pairwise_distances(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distances between the rows of ``a`` and ``b`` (default ``a``), with a finite gradient at 0."""
    b = a if b is None else b
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return torch.sqrt(sq.clamp_min(1e-12))


def _hard_triplet(dist: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over anchors with a positive and a negative of max(0, margin + hardest positive − hardest negative)."""
    usable = positive.any(1) & negative.any(1)
    if not usable.any():
        return dist.sum() * 0.0
    far = torch.where(positive, dist, torch.zeros_like(dist)).max(1).values
    near = torch.where(negative, dist, torch.full_like(dist, torch.finfo(dist.dtype).max)).min(1).values
    return torch.relu(margin + far - near)[usable].mean()


def invariance_loss(z: torch.Tensor, copies: int, margin: float) -> torch.Tensor:
    """``L_inv`` of embeddings ``z`` (copies·n, d) of n patches, copy after copy (as :func:`with_transforms` orders
    them): every copy of a patch is an anchor, its other copies the positives, every copy of the others a negative.
    """
    n = len(z) // copies
    patch = torch.arange(len(z), device=z.device) % n
    same = patch[:, None] == patch[None, :]
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    return _hard_triplet(pairwise_distances(z), same & ~eye, ~same, margin)


def radial_loss(z: torch.Tensor, upsilon: torch.Tensor, lambda_rad: float) -> torch.Tensor:
    """``L_rad``: the mean over the pairs i < j of ``|d_z − λ_rad d_Υ|``."""
    if len(z) < 2:
        return z.sum() * 0.0
    i, j = torch.triu_indices(len(z), len(z), offset=1, device=z.device)
    d_z = pairwise_distances(z)[i, j]
    d_u = pairwise_distances(upsilon)[i, j]
    return torch.mean(torch.abs(d_z - lambda_rad * d_u))


def label_loss(z: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """``L_lab``: batch-hard triplets, positives the other patches of the anchor's class, negatives the rest."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    return _hard_triplet(pairwise_distances(z), same & ~eye, ~same, margin)


@dataclass(frozen=True)
class LossWeights:
    """The weights, margins and proportionality factor of ``L = w_inv L_inv + w_rad L_rad + w_lab L_lab``."""

    w_inv: float = 2.0
    alpha_inv: float = 1.0
    w_rad: float = 2.0
    lambda_rad: float = 0.1
    w_lab: float = 1.0
    alpha_lab: float = 8.0


def metric_losses(
    model: nn.Module, x: torch.Tensor, upsilon: torch.Tensor, labels: torch.Tensor, w: LossWeights
) -> dict[str, torch.Tensor]:
    """The total loss and its three parts on a batch of standardised patches ``x`` (n, P, P, c).

    With ``w_inv > 0`` the network sees the batch and its five transformations
    (6n patches, one batch-norm batch); ``L_rad`` and ``L_lab`` are taken over the
    untransformed patches. Without invariance the transformations are never made.
    """
    n = len(x)
    if w.w_inv > 0:
        z_all = model(with_transforms(x))
        z = z_all[:n]
        inv = invariance_loss(z_all, 1 + len(TRANSFORMS), w.alpha_inv)
    else:
        z = model(x)
        inv = z.sum() * 0.0
    rad = radial_loss(z, upsilon, w.lambda_rad) if w.w_rad > 0 else z.sum() * 0.0
    lab = label_loss(z, labels, w.alpha_lab) if w.w_lab > 0 else z.sum() * 0.0
    total = w.w_inv * inv + w.w_rad * rad + w.w_lab * lab
    return {"loss": total, "inv": inv, "rad": rad, "lab": lab}


# ---------------------------------------------------------------------------- the trained metric
class MetricEncoder(TorchEncoder):
    """The learned metric: maps native patches (n, P, P, 14) to z (n, latent_dim) float32.

    Inference is in eval mode, so it is deterministic. Build one with
    :func:`mummi.sampler.metric_train.train_metric` or :meth:`load`.
    """

    kind: ClassVar[str] = "metric"
    needs_native: ClassVar[bool] = True
    architecture: ClassVar[type[MetricArchitecture]] = MetricArchitecture
    network: ClassVar[type[PatchMetricNet]] = PatchMetricNet
    model: PatchMetricNet

    @property
    def arch(self) -> MetricArchitecture:
        return self.model.arch

    def __repr__(self) -> str:
        return (f"MetricEncoder(latent_dim={self.latent_dim}, grid={self.arch.grid}, device={str(self.device)!r}, "
                f"batch_size={self.batch_size})")  # fmt: skip

    def normalise(self, native: np.ndarray) -> np.ndarray:
        """``native`` (n, P, P, 14) raw patches, checked and standardised as the network sees them."""
        a = self.arch
        return self.scaling.apply(check_coarse(native, (a.grid, a.grid, a.channels), what="native"))

    def encode(self, native: np.ndarray) -> np.ndarray:
        """z (n, latent_dim) float32 of ``native`` (n, P, P, 14) raw (unnormalised) patches.

        The standardisation is folded into the network's first (linear) layer, so the
        raw patches are read once, chunk by chunk, and never copied whole; on CPU the
        chunks hold at most :data:`CPU_CHUNK` patches, whose activations stay in cache
        (2–3× the throughput of 4096-patch batches). Equal to ``model(normalise(x))``
        up to float32 rounding.
        """
        a = self.arch
        x = np.asarray(native, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (a.grid, a.grid, a.channels):
            msg = f"native patches must have shape (n, {a.grid}, {a.grid}, {a.channels}), got {x.shape}"
            raise ValueError(msg)
        out = np.empty((len(x), self.latent_dim), dtype=np.float32)
        chunk = self.batch_size if self.device.type == "cuda" else min(self.batch_size, CPU_CHUNK)
        self.model.eval()
        with torch.inference_mode():
            low = torch.from_numpy(self.scaling.low).to(self.device)
            span = torch.from_numpy(self.scaling.span).to(self.device)
            mixing = self.model.mixing() / span  # W (x - low) / span + b = (W / span) x + (b - (W / span) low)
            bias = self.model.mixing_bias() - mixing @ low
            for lo in range(0, len(x), chunk):
                batch = torch.from_numpy(np.ascontiguousarray(x[lo : lo + chunk])).to(self.device)
                if not bool(torch.isfinite(batch).all()):
                    msg = "native patches contain NaN or infinite values"
                    raise ValueError(msg)
                out[lo : lo + len(batch)] = self.model.trunk(batch @ mixing.T + bias).float().cpu().numpy()
        return out
