"""A trained patch encoder on disk and in memory: :class:`Encoder`.

A saved model is a directory with

* ``weights.pt`` — the VAE's ``state_dict``, tensors only, written with
  ``torch.save`` and read back with ``torch.load(weights_only=True)``, so loading
  never unpickles arbitrary objects;
* ``training.json`` — the training report (optional for loading);
* ``encoder.json`` — the manifest: format, architecture, per-channel normalisation,
  and the size and SHA-256 of the weights file. It is written last, atomically, so a
  directory holding a manifest holds a complete model.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mummi.core.atomic import atomic_write, atomic_write_text, sha256_of
from mummi.sampler.patchdata import ChannelRange, check_coarse
from mummi.sampler.vae import Architecture, PatchVAE

log = logging.getLogger(__name__)

FORMAT = "mummi-encoder/1"
MANIFEST, WEIGHTS, REPORT = "encoder.json", "weights.pt", "training.json"
DEVICES = ("auto", "cpu", "gpu")


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


class Encoder:
    """Maps coarse patches (n, 5, 5, 14) to latent vectors (n, latent_dim), float32.

    Inference is in eval mode and uses the mean of the latent distribution, so it is
    deterministic. Build one with :func:`mummi.sampler.train.train_encoder` or
    :meth:`load`.
    """

    def __init__(self, model: PatchVAE, scaling: ChannelRange, device: str = "cpu", batch_size: int = 4096) -> None:
        if batch_size <= 0:
            msg = f"batch_size must be positive, got {batch_size}"
            raise ValueError(msg)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.scaling = scaling
        self.batch_size = batch_size
        self.report: dict[str, Any] | None = None  # the training report, when known

    @property
    def arch(self) -> Architecture:
        return self.model.arch

    @property
    def latent_dim(self) -> int:
        return self.model.arch.latent_dim

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
    def save(self, path: str | Path, report: dict[str, Any] | None = None) -> Path:
        """Write the model into directory ``path``: weights, then the report, then the manifest (last)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        atomic_write(path / WEIGHTS, lambda tmp: torch.save(state, tmp))
        if report is not None:
            atomic_write_text(path / REPORT, json.dumps(report, indent=2) + "\n")
        manifest = {
            "format": FORMAT,
            "kind": "vae",
            "architecture": self.arch.to_json(),
            "normalisation": self.scaling.to_json(),
            "weights": {"file": WEIGHTS, "bytes": (path / WEIGHTS).stat().st_size, "sha256": sha256_of(path / WEIGHTS)},
            "torch": torch.__version__,
        }
        atomic_write_text(path / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        log.info("saved encoder (latent_dim %d) to %s", self.latent_dim, path)
        return path

    @staticmethod
    def exists(path: str | Path) -> bool:
        """True when directory ``path`` holds a complete saved model (a valid manifest and its weights file)."""
        path = Path(path)
        try:
            manifest = _read_manifest(path)
            weights = path / manifest["weights"]["file"]
            return weights.is_file() and weights.stat().st_size == int(manifest["weights"]["bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            return False

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", batch_size: int = 4096) -> Encoder:
        """The model saved in directory ``path``, for inference on ``device`` (auto, cpu or gpu).

        Raises ValueError for an incomplete or corrupt model, a weights file that
        does not match its manifest, or one that holds anything but tensors.
        """
        path = Path(path)
        try:
            manifest = _read_manifest(path)
            arch = Architecture.from_json(manifest["architecture"])
            scaling = ChannelRange.from_json(manifest["normalisation"], arch.channels)
            weights = path / manifest["weights"]["file"]
            expected = manifest["weights"]["sha256"]
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as err:
            msg = f"{path}: no complete encoder model here ({err})"
            raise ValueError(msg) from err
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
        model = PatchVAE(arch)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            msg = f"{weights}: does not fit the architecture in {path / MANIFEST}: {err}"
            raise ValueError(msg) from err
        log.info("loaded encoder (latent_dim %d) from %s", arch.latent_dim, path)
        encoder = cls(model, scaling, device=device, batch_size=batch_size)
        try:
            encoder.report = json.loads((path / REPORT).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            encoder.report = None
        return encoder
