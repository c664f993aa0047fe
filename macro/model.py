"""The macro model: the DDFT membrane (:mod:`.ddft`) coupled to RAS particles (:mod:`.ras`).

Usage::

    model = MacroModel(default_parameters(), MacroSettings(), seed=1)
    model.run_until(1000.0)          # ns
    frame = model.frame()
    model.checkpoint("ckpt.npz")
    same = MacroModel.restore("ckpt.npz", MacroSettings())

One :meth:`step` advances the lipid fields by ``dt_ns`` in the potential of the RAS
where they are, and the RAS by ``dt_ns / ras_dt`` Langevin substeps in the lipid
fields as they were (both from time t), then optionally switches RAS states.
Randomness comes from four streams spawned from the seed (initial state, lipid
noise, RAS noise, state switches); a checkpoint stores the fields, the RAS, the
step count, the parameters and the generators' states, so a restored model
continues bit for bit like an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mummi.core.atomic import atomic_savez
from mummi.core.spec import MacroSettings
from mummi.macro.backend import Backend, make_backend
from mummi.macro.ddft import Grid, LipidOperators
from mummi.macro.frames import Frame
from mummi.macro.params import MacroParameters, kt_kj_mol
from mummi.macro.ras import RasDynamics, place_ras, potential_blocks, stationary_states, switch_states

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "mummi-macro-checkpoint/1"
_STREAMS = ("init", "lipid", "ras", "states")
#: Settings a checkpoint must agree with to be restored.
_FINGERPRINT = ("box_nm", "grid_points", "n_ras", "dt_ns", "ras_dt_ps", "temperature_K", "noise", "ras_state_changes")


class MacroModel:
    """Lipid fields + RAS particles; ``compute`` and ``dtype`` pick the backend (numpy float32 by default)."""

    ops: LipidOperators  # set by set_parameters

    def __init__(
        self,
        params: MacroParameters,
        settings: MacroSettings | None = None,
        seed: int = 0,
        *,
        compute: str | None = None,
        dtype: str = "float32",
    ) -> None:
        self._setup(params, settings, seed, compute, dtype)
        self._init_state()
        log.info(
            "macro model: %d×%d grid, %.1f nm box, %d RAS, %s/%s on %s, D·dt/h² up to %.2f",
            self.grid.n,
            self.grid.n,
            self.grid.box_nm,
            self.settings.n_ras,
            self.backend.name,
            self.backend.real,
            self.backend.device,
            self.ops.explicit_limit,
        )

    def _setup(
        self, params: MacroParameters, settings: MacroSettings | None, seed: int, compute: str | None, dtype: str
    ) -> None:
        self.settings = settings = settings if settings is not None else MacroSettings()
        self.grid = Grid(settings.grid_points, settings.box_nm)
        self.seed = seed
        self.backend: Backend = make_backend(compute or settings.compute, dtype)
        self.rngs = {
            name: np.random.Generator(np.random.PCG64(s))
            for name, s in zip(_STREAMS, np.random.SeedSequence(seed).spawn(len(_STREAMS)))
        }
        self.substeps = _substeps(settings)
        self.step_count = 0
        self.positivity_fixes = 0  # steps that needed the positivity repair
        self.largest_repair = 0.0  # largest clipped (negative) mass, as a fraction of its species' mass
        self.timings: dict[str, float] = defaultdict(float)
        self.set_parameters(params)

    # ------------------------------------------------------------------ state
    @property
    def time_ns(self) -> float:
        return self.step_count * self.settings.dt_ns

    @property
    def fields(self) -> np.ndarray:
        """The 14 lipid fields (host copy, (14, N, N))."""
        return self.backend.to_numpy(self._c)

    def set_fields(self, fields: np.ndarray) -> None:
        """Replace the lipid fields (e.g. a test's initial condition); their masses become the conserved ones."""
        fields = np.asarray(fields, dtype=np.float64)
        if fields.shape != (self.params.mean_concentration_per_nm2.size, self.grid.n, self.grid.n):
            raise ValueError(f"fields must have shape (14, {self.grid.n}, {self.grid.n}), got {fields.shape}")
        self._c_hat = self.backend.rfft2(self.backend.asarray(fields))
        self._c = self.backend.irfft2(self._c_hat, self.grid.n)
        self._mass_mode = self.backend.asarray(
            self.backend.to_numpy(self._c_hat[:, 0, 0])
        )  # Σ c per channel, conserved

    def set_ras(self, positions_nm: np.ndarray, states: np.ndarray | None = None) -> None:
        positions = np.asarray(positions_nm, dtype=np.float64).reshape(-1, 2) % self.grid.box_nm
        self.ras_positions = positions
        self.ras_states = np.zeros(len(positions), np.int64) if states is None else np.asarray(states, np.int64).copy()
        if (
            self.ras_states.shape != (len(positions),)
            or np.any(self.ras_states >= self.params.n_states)
            or np.any(self.ras_states < 0)
        ):
            raise ValueError(f"RAS states must be {len(positions)} integers in [0, {self.params.n_states})")
        self.ras_ids = np.arange(len(positions), dtype=np.int64)

    def set_parameters(self, params: MacroParameters) -> None:
        """Use ``params`` from the next step on (a reload); the state, and so every species' mass, is kept."""
        old = getattr(self, "params", None)
        if old is not None and old.n_states != params.n_states:
            raise ValueError(f"new parameters have {params.n_states} RAS states, the model has {old.n_states}")
        self.params = params
        s = self.settings
        scale = self.ops.concentration_scale if old is not None else None
        self.ops = LipidOperators(params, self.grid, s.dt_ns, s.temperature_K, self.backend, s.noise, scale)
        self.dynamics = RasDynamics(
            diffusion_nm2_per_ns=params.ras_diffusion_nm2_per_ns,
            kt_kj_mol=kt_kj_mol(s.temperature_K),
            repulsion_kj_mol=params.ras_repulsion_kj_mol,
            size_nm=params.ras_size_nm,
            box_nm=s.box_nm,
            spacing_nm=self.grid.spacing_nm,
            substeps=self.substeps,
            substep_ns=s.dt_ns / self.substeps,
        )
        if old is not None:
            log.info("macro parameters: version %d -> %d at t = %.0f ns", old.version, params.version, self.time_ns)

    def _init_state(self) -> None:
        rng = self.rngs["init"]
        p, n = self.params, self.grid.n
        fields = np.broadcast_to(
            p.mean_concentration_per_nm2[:, None, None], (p.mean_concentration_per_nm2.size, n, n)
        ).copy()
        fluctuation = self.ops.stationary_noise(rng)
        if fluctuation is not None:
            fields = np.maximum(fields + fluctuation, 0.05 * fields)
            fields *= (p.mean_concentration_per_nm2 / fields.mean(axis=(1, 2)))[:, None, None]
        self.set_fields(fields)
        positions = place_ras(self.settings.n_ras, self.grid.box_nm, p.ras_size_nm, rng)
        states = rng.choice(p.n_states, size=self.settings.n_ras, p=stationary_states(p.ras_state_rates_per_ns))
        self.set_ras(positions, states)

    # ------------------------------------------------------------------ dynamics
    def step(self) -> None:
        """Advance lipids and RAS by one lipid step.

        Both halves start from the state at time t and do not share mutable data,
        so the RAS half (W from ĉ(t), then the Langevin substeps) runs in a worker
        thread while this thread advances the lipids: numpy and scipy release the
        GIL in their array work, which lets the serial parts of each half use the
        second core. The result is the same as running them one after the other.
        """
        be, ops, tm = self.backend, self.ops, self.timings
        t0 = time.perf_counter()
        ras = None
        if len(self.ras_positions):
            normals = self.rngs["ras"].standard_normal((self.substeps,) + self.ras_positions.shape)
            ras = self._worker().submit(self._ras_half, self._c_hat, self.ras_positions, self.ras_states, normals)
        phi = ops.potential(self._c, self._c_hat)
        if len(self.ras_positions):
            rows, cols, blocks = potential_blocks(
                self.ras_positions, self.ras_states, ops.corner_stencils, self.grid.spacing_nm, self.grid.n
            )
            be.add_blocks(phi, rows, cols, blocks)
        c, c_hat = ops.advance(self._c, self._c_hat, phi, ops.draw_noise(self.rngs["lipid"]))
        c, c_hat = self._keep_positive(c, c_hat)
        t1 = time.perf_counter()
        if ras is not None:
            self.ras_positions = ras.result()
            if self.settings.ras_state_changes:
                self.ras_states = switch_states(
                    self.ras_states, self.params.ras_state_rates_per_ns, self.settings.dt_ns, self.rngs["states"]
                )
        self._c, self._c_hat = c, c_hat
        rescale = ops.needs_rescale(be.channel_max(c))
        if rescale is not None:
            log.debug(
                "step %d: stabilisation rescaled to %s x mean",
                self.step_count,
                np.round(rescale / self.params.mean_concentration_per_nm2, 1).tolist(),
            )
            ops.set_concentration_scale(rescale)
        self.step_count += 1
        tm["lipids"] += t1 - t0
        tm["step"] += time.perf_counter() - t0

    def _ras_half(self, c_hat: Any, positions: np.ndarray, states: np.ndarray, normals: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        w = self.ops.ras_field(c_hat)
        t1 = time.perf_counter()
        out = self.dynamics.run(positions, states, w, normals)
        self.timings["ras_field"] += t1 - t0
        self.timings["ras_substeps"] += time.perf_counter() - t1
        return out

    def _worker(self) -> ThreadPoolExecutor:
        if getattr(self, "_executor", None) is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="macro-ras")
        return self._executor

    def run_until(self, time_ns: float, callback: Callable[[MacroModel], None] | None = None) -> None:
        """Step until the model time reaches ``time_ns`` (rounded to whole steps); ``callback(model)`` after each."""
        target = int(math.floor(time_ns / self.settings.dt_ns + 1e-9))
        while self.step_count < target:
            self.step()
            if callback is not None:
                callback(self)

    def _keep_positive(self, c: Any, c_hat: Any) -> tuple[Any, Any]:
        """Clip negative concentrations and rescale those species to their exact mass (a counted safety net)."""
        be = self.backend
        low = be.channel_min(c)
        bad = np.flatnonzero(low < 0)
        if bad.size == 0:
            return c, c_hat
        self.positivity_fixes += 1
        mass = np.real(be.to_numpy(self._mass_mode)).astype(np.float64)  # Σ c per channel (the k = 0 mode)
        for ch in bad:
            ci = c[ch]
            ci[ci < 0] = 0
            total = float(be.channel_sum(ci[None])[0])
            self.largest_repair = max(self.largest_repair, total / mass[ch] - 1.0)
            ci *= mass[ch] / total
            c_hat[ch] = be.rfft2(ci)
            c_hat[ch, 0, 0] = self._mass_mode[ch]
        log.debug(
            "step %d: negative concentrations (min %.3g) clipped in channels %s",
            self.step_count,
            float(low.min()),
            bad.tolist(),
        )
        return c, c_hat

    # ------------------------------------------------------------------ output
    def frame(self) -> Frame:
        return Frame(
            time_ns=self.time_ns,
            step=self.step_count,
            fields=self.fields.astype(np.float32),
            ras_positions_nm=self.ras_positions.copy(),
            ras_states=self.ras_states.copy(),
            ras_ids=self.ras_ids.copy(),
            box_nm=self.grid.box_nm,
            param_version=self.params.version,
        )

    def frames(self, count: int, every_steps: int, burn_steps: int = 0) -> list[Frame]:
        """``count`` frames, ``every_steps`` steps apart, after ``burn_steps`` steps."""
        for _ in range(burn_steps):
            self.step()
        frames = []
        for _ in range(count):
            frames.append(self.frame())
            for _ in range(every_steps):
                self.step()
        return frames

    def masses(self) -> np.ndarray:
        """Σ h² c_i per channel (float64)."""
        return self.backend.channel_sum(self._c) * self.grid.spacing_nm**2

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, path: str | Path) -> Path:
        """Write the whole state to ``path`` (``.npz``, no pickle) atomically."""
        be = self.backend
        arrays: dict[str, np.ndarray] = {
            "format": np.array(CHECKPOINT_FORMAT),
            "fingerprint": np.array(json.dumps(_fingerprint(self.settings))),
            "dtype": np.array(str(be.real)),
            "seed": np.array(self.seed),
            "step": np.array(self.step_count),
            "positivity_fixes": np.array(self.positivity_fixes),
            "largest_repair": np.array(self.largest_repair),
            "c": be.to_numpy(self._c),
            "c_hat": be.to_numpy(self._c_hat),
            "mass_mode": be.to_numpy(self._mass_mode),
            "concentration_scale": self.ops.concentration_scale,
            "ras_positions": self.ras_positions,
            "ras_states": self.ras_states,
            "ras_ids": self.ras_ids,
            "rng_states": np.array(json.dumps({k: g.bit_generator.state for k, g in self.rngs.items()})),
        }
        arrays.update({f"params.{k}": v for k, v in self.params.to_arrays().items()})
        return atomic_savez(path, **arrays)

    @classmethod
    def restore(
        cls, path: str | Path, settings: MacroSettings | None = None, *, compute: str | None = None
    ) -> MacroModel:
        """The model saved in ``path``; ``settings`` must match the dynamics it was run with."""
        settings = settings if settings is not None else MacroSettings()
        with np.load(path, allow_pickle=False) as d:
            if str(d["format"]) != CHECKPOINT_FORMAT:
                raise ValueError(f"{path}: not a macro checkpoint (format {str(d['format'])!r})")
            saved = json.loads(str(d["fingerprint"]))
            now = _fingerprint(settings)
            diff = {k: (saved.get(k), now[k]) for k in now if saved.get(k) != now[k]}
            if diff:
                detail = ", ".join(f"{k}: checkpoint {a!r}, settings {b!r}" for k, (a, b) in diff.items())
                raise ValueError(f"{path}: checkpoint does not match the macro settings ({detail})")
            params = MacroParameters.from_arrays(
                {k.removeprefix("params."): d[k] for k in d.files if k.startswith("params.")}
            )
            model = cls.__new__(cls)
            model._setup(params, settings, int(d["seed"]), compute, str(d["dtype"]))
            model.ops.set_concentration_scale(d["concentration_scale"])
            states = json.loads(str(d["rng_states"]))
            for name, generator in model.rngs.items():
                generator.bit_generator.state = states[name]
            be = model.backend
            model._c, model._c_hat, model._mass_mode = (
                be.asarray(d["c"]),
                be.asarray(d["c_hat"]),
                be.asarray(d["mass_mode"]),
            )
            model.ras_positions = np.array(d["ras_positions"])
            model.ras_states = np.array(d["ras_states"])
            model.ras_ids = np.array(d["ras_ids"])
            model.step_count = int(d["step"])
            model.positivity_fixes = int(d["positivity_fixes"])
            model.largest_repair = float(d["largest_repair"])
        log.info("macro model restored from %s at step %d (t = %.0f ns)", path, model.step_count, model.time_ns)
        return model


def _fingerprint(settings: MacroSettings) -> dict[str, Any]:
    return {k: getattr(settings, k) for k in _FINGERPRINT}


def _substeps(settings: MacroSettings) -> int:
    ratio = settings.dt_ns / (settings.ras_dt_ps * 1e-3)
    n = max(1, round(ratio))
    if abs(n - ratio) > 1e-6 * ratio:
        log.warning(
            "dt_ns / ras_dt_ps = %.4f is not whole; using %d RAS substeps of %.4f ps",
            ratio,
            n,
            settings.dt_ns / n * 1e3,
        )
    return n
