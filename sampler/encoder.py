"""A trained patch encoder on disk and in memory: :class:`Encoder` (the VAE), and what every encoder kind shares.

A saved model is a directory with

* ``weights.pt`` — the network's ``state_dict``, tensors only, written with
  ``torch.save`` and read back with ``torch.load(weights_only=True)``, so loading
  never unpickles arbitrary objects;
* ``training.json`` — the training report (optional for loading);
* ``encoder.json`` — the manifest: format, kind (``vae`` or ``metric``),
  architecture, per-channel normalisation, and the size and SHA-256 of the weights
  file. It is written last, atomically, so a directory holding a manifest holds a
  complete model.

:func:`load_encoder` loads a model of either kind (the learned metric is
:class:`mummi.sampler.metric.MetricEncoder`); both answer the :class:`PatchEncoder`
protocol the campaign encodes its patches with.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import torch

from mummi.core.atomic import atomic_write, atomic_write_text, sha256_of
from mummi.core.spec import EncoderSettings
from mummi.sampler.patchdata import ChannelRange, check_coarse
from mummi.sampler.vae import Architecture, PatchVAE

log = logging.getLogger(__name__)

FORMAT = "mummi-encoder/1"
MANIFEST, WEIGHTS, REPORT = "encoder.json", "weights.pt", "training.json"
DEVICES = ("auto", "cpu", "gpu")
KINDS = ("vae", "metric")
AnyEncoder = TypeVar("AnyEncoder", bound="TorchEncoder")


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when present else CPU; ``gpu`` → CUDA (ValueError without it); ``cpu`` → CPU."""
    if device not in DEVICES:
        msg = f"device {device!r} is not one of {DEVICES}"
        raise ValueError(msg)
    if device == "gpu" and not torch.cuda.is_available():
        msg = "device 'gpu' asked for, but torch sees no CUDA device; use 'auto' or 'cpu'"
        raise ValueError(msg)
    return torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        msg = f"{path / MANIFEST}: not an encoder manifest (format {got!r}, expected {FORMAT!r})"
        raise ValueError(msg)
    return manifest


def saved_latent_dim(path: str | Path) -> int:
    """The latent size of the model saved in directory ``path``, from its manifest alone (ValueError if none)."""
    try:
        return int(_read_manifest(Path(path))["architecture"]["latent_dim"])
    except (OSError, KeyError, TypeError) as err:
        raise ValueError(f"{Path(path) / MANIFEST}: no readable encoder manifest ({err})") from err


def saved_kind(path: str | Path) -> str:
    """The kind (``vae``, ``metric``) of the model saved in directory ``path``, from its manifest alone."""
    try:
        return str(_read_manifest(Path(path)).get("kind", "vae"))
    except (OSError, TypeError) as err:
        raise ValueError(f"{Path(path) / MANIFEST}: no readable encoder manifest ({err})") from err


class PatchEncoder(Protocol):
    """What a campaign needs of a trained encoder, whatever its kind."""

    kind: ClassVar[str]
    needs_native: ClassVar[bool]
    """True: :meth:`encode` takes native patches (n, P, P, 14); False: coarse ones (n, 5, 5, 14)."""
    report: dict[str, Any] | None

    @property
    def latent_dim(self) -> int: ...

    def encode(self, patches: np.ndarray) -> np.ndarray:
        """Latent vectors (n, latent_dim) float32 of raw (unnormalised) patches."""
        ...

    def save(self, path: str | Path, report: dict[str, Any] | None = None) -> Path: ...


def load_encoder(path: str | Path, device: str = "cpu", batch_size: int = 4096) -> PatchEncoder:
    """The model saved in directory ``path``, of the kind its manifest names (ValueError as :meth:`Encoder.load`)."""
    kind = saved_kind(path)
    if kind == "vae":
        return Encoder.load(path, device=device, batch_size=batch_size)
    if kind == "metric":
        from mummi.sampler.metric import MetricEncoder  # the metric module builds on this one

        return MetricEncoder.load(path, device=device, batch_size=batch_size)
    msg = f"{Path(path) / MANIFEST}: unknown encoder kind {kind!r}; known: {KINDS}"
    raise ValueError(msg)


def save_model(
    path: str | Path,
    kind: str,
    architecture: dict[str, Any],
    scaling: ChannelRange,
    model: torch.nn.Module,
    report: dict[str, Any] | None,
) -> Path:
    """Write a model into directory ``path``: weights, then the report, then the manifest (last)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path / WEIGHTS, lambda tmp: torch.save(state, tmp))
    if report is not None:
        atomic_write_text(path / REPORT, json.dumps(report, indent=2) + "\n")
    manifest = {
        "format": FORMAT,
        "kind": kind,
        "architecture": architecture,
        "normalisation": scaling.to_json(),
        "weights": {"file": WEIGHTS, "bytes": (path / WEIGHTS).stat().st_size, "sha256": sha256_of(path / WEIGHTS)},
        "torch": torch.__version__,
    }
    atomic_write_text(path / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return path


def load_model(path: str | Path, kind: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any] | None]:
    """(manifest, state_dict, report or None) of the ``kind`` model saved in directory ``path``.

    Raises ValueError for an incomplete or corrupt model, one of another kind, a
    weights file that does not match its manifest, or one that holds anything but
    tensors; the weights file is never unpickled.
    """
    path = Path(path)
    try:
        manifest = _read_manifest(path)
        weights = path / manifest["weights"]["file"]
        expected = manifest["weights"]["sha256"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as err:
        msg = f"{path}: no complete encoder model here ({err})"
        raise ValueError(msg) from err
    if manifest.get("kind", "vae") != kind:
        msg = f"{path}: holds a {manifest.get('kind')!r} encoder, not a {kind!r} one (load_encoder loads either)"
        raise ValueError(msg)
    if not weights.is_file() or sha256_of(weights) != expected:
        msg = f"{weights}: missing, or its SHA-256 does not match the manifest {path / MANIFEST}"
        raise ValueError(msg)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        msg = f"{weights}: refused: not a plain tensor state_dict ({err.__class__.__name__})"
        raise ValueError(msg) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        msg = f"{weights}: refused: expected a dict of tensors"
        raise ValueError(msg)
    try:
        report = json.loads((path / REPORT).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        report = None
    return manifest, state, report


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load ``state`` into ``model`` exactly (ValueError naming the model when they do not fit)."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        msg = f"{Path(path) / WEIGHTS}: does not fit the architecture in {Path(path) / MANIFEST}: {err}"
        raise ValueError(msg) from err


class TorchEncoder:
    """What the encoders share: a torch model in eval mode on a device, the channel scaling, batches, save, load."""

    kind: ClassVar[str]
    architecture: ClassVar[Any]
    """The architecture class (``from_json``, ``channels``) the manifest describes."""
    network: ClassVar[Any]
    """The torch module class built from an architecture."""
    model: Any

    def __init__(self, model: Any, scaling: ChannelRange, device: str = "cpu", batch_size: int = 4096) -> None:
        if batch_size <= 0:
            msg = f"batch_size must be positive, got {batch_size}"
            raise ValueError(msg)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.scaling = scaling
        self.batch_size = batch_size
        self.report: dict[str, Any] | None = None  # the training report, when known

    @classmethod
    def trained(
        cls: type[AnyEncoder],
        model: Any,
        scaling: ChannelRange,
        settings: EncoderSettings,
        report: dict[str, Any],
        out_dir: str | Path | None,
    ) -> AnyEncoder:
        """The encoder of a freshly trained ``model`` with its training ``report``, saved to ``out_dir`` if given."""
        encoder = cls(model, scaling, device=settings.device, batch_size=settings.batch_size)
        encoder.report = report
        if out_dir is not None:
            encoder.save(out_dir, report=report)
        return encoder

    @property
    def latent_dim(self) -> int:
        return int(self.model.arch.latent_dim)

    def save(self, path: str | Path, report: dict[str, Any] | None = None) -> Path:
        """Write the model into directory ``path``: weights, then the report, then the manifest (last)."""
        path = save_model(path, self.kind, self.model.arch.to_json(), self.scaling, self.model, report)
        log.info("saved the %s encoder (latent_dim %d) to %s", self.kind, self.latent_dim, path)
        return path

    @classmethod
    def load(cls: type[AnyEncoder], path: str | Path, device: str = "cpu", batch_size: int = 4096) -> AnyEncoder:
        """The model of this kind saved in directory ``path``, for inference on ``device`` (auto, cpu or gpu).

        Raises ValueError for an incomplete or corrupt model, a model of another
        kind, a weights file that does not match its manifest, or one that holds
        anything but tensors.
        """
        manifest, state, report = load_model(path, cls.kind)
        try:
            arch = cls.architecture.from_json(manifest["architecture"])
            scaling = ChannelRange.from_json(manifest["normalisation"], arch.channels)
        except (KeyError, TypeError) as err:
            msg = f"{path}: no complete encoder model here ({err})"
            raise ValueError(msg) from err
        model = cls.network(arch)
        load_state(model, state, path)
        log.info("loaded the %s encoder (latent_dim %d) from %s", cls.kind, arch.latent_dim, path)
        encoder = cls(model, scaling, device=device, batch_size=batch_size)
        encoder.report = report
        return encoder


class Encoder(TorchEncoder):
    """The VAE: maps coarse patches (n, 5, 5, 14) to latent vectors (n, latent_dim), float32.

    Inference is in eval mode and uses the mean of the latent distribution, so it is
    deterministic. Build one with :func:`mummi.sampler.train.train_encoder` or
    :meth:`load`.
    """

    kind: ClassVar[str] = "vae"
    needs_native: ClassVar[bool] = False
    architecture: ClassVar[type[Architecture]] = Architecture
    network: ClassVar[type[PatchVAE]] = PatchVAE
    model: PatchVAE

    @property
    def arch(self) -> Architecture:
        return self.model.arch

    def __repr__(self) -> str:
        return f"Encoder(latent_dim={self.latent_dim}, device={str(self.device)!r}, batch_size={self.batch_size})"

    def encode(self, coarse: np.ndarray) -> np.ndarray:
        """Latent means (n, latent_dim) float32 of ``coarse`` (n, 5, 5, 14) raw (unnormalised) patches."""
        a = self.arch
        x = self.scaling.apply(check_coarse(coarse, (a.grid, a.grid, a.channels)))
        out = np.empty((len(x), self.latent_dim), dtype=np.float32)
        self.model.eval()
        with torch.inference_mode():
            for lo in range(0, len(x), self.batch_size):
                batch = torch.from_numpy(x[lo : lo + self.batch_size]).to(self.device)
                out[lo : lo + len(batch)] = self.model.encode(batch)[0].float().cpu().numpy()
        return out

    def reconstruct(self, coarse: np.ndarray) -> np.ndarray:
        """Decoded latent means, in the units of ``coarse``: how well the latent space keeps a patch."""
        a = self.arch
        x = self.scaling.apply(check_coarse(coarse, (a.grid, a.grid, a.channels)))
        out = np.empty_like(x)
        self.model.eval()
        with torch.inference_mode():
            for lo in range(0, len(x), self.batch_size):
                batch = torch.from_numpy(x[lo : lo + self.batch_size]).to(self.device)
                out[lo : lo + len(batch)] = self.model(batch)[0].float().cpu().numpy()
        return self.scaling.invert(out)

    # ------------------------------------------------------------------ on disk
    @staticmethod
    def exists(path: str | Path) -> bool:
        """True when directory ``path`` holds a complete saved model of any kind (a valid manifest and its weights)."""
        path = Path(path)
        try:
            manifest = _read_manifest(path)
            weights = path / manifest["weights"]["file"]
            return weights.is_file() and weights.stat().st_size == int(manifest["weights"]["bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
