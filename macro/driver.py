"""The macro model as a campaign job: frames, patches, parameter reloads, checkpoints.

Layout under the campaign directory ``W`` (the contract with the workflow manager)::

    W/macro/frames/frame-<t>.h5      one per output interval (written atomically)
    W/macro/params/params-v<k>.npz   parameter versions; the feedback adds new ones
    W/macro/checkpoint.npz           the latest checkpoint
    W/macro/macro.status.json        {"state": "done" | "incomplete" | "failed", ...}
    W/patches/patches-<t>.h5         the patches of frame <t>

A run resumes from the checkpoint when there is one, so running it again after a
crash or a clean stop continues the same trajectory (frames after the checkpoint
are recomputed identically and replace their earlier copies). Every
``reload_interval_ns`` a coupled run switches to the newest parameter version;
frames record the version that produced them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mummi.macro.frames import write_frame
from mummi.macro.model import MacroModel
from mummi.macro.params import MacroParameters, default_parameters, latest_parameters, load_parameters, write_parameters
from mummi.macro.patches import extract_patches, write_patches
from mummi.workflow.atomic import atomic_write_text
from mummi.workflow.spec import CampaignSpec

log = logging.getLogger(__name__)

DONE, INCOMPLETE, FAILED = "done", "incomplete", "failed"


@dataclass(frozen=True)
class MacroLayout:
    """Where the macro job reads and writes under campaign directory ``workdir``."""

    workdir: Path

    @property
    def frames(self) -> Path:
        return self.workdir / "macro" / "frames"

    @property
    def params(self) -> Path:
        return self.workdir / "macro" / "params"

    @property
    def checkpoint(self) -> Path:
        return self.workdir / "macro" / "checkpoint.npz"

    @property
    def status(self) -> Path:
        return self.workdir / "macro" / "macro.status.json"

    @property
    def patches(self) -> Path:
        return self.workdir / "patches"

    def create(self) -> None:
        for d in (self.frames, self.params, self.patches):
            d.mkdir(parents=True, exist_ok=True)


def write_status(layout: MacroLayout, state: str, **info: object) -> None:
    record = {"state": state, "stage": "macro", "time": time.time(), **info}
    atomic_write_text(layout.status, json.dumps(record, indent=1) + "\n")


def read_status(layout: MacroLayout) -> dict[str, object] | None:
    try:
        return json.loads(layout.status.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class MacroRun:
    """Open (resume or start) the macro model of a campaign and run it with its outputs."""

    def __init__(self, spec: CampaignSpec, workdir: str | Path | None = None, *, coupled: bool = True, compute: str | None = None) -> None:
        self.spec = spec
        self.layout = MacroLayout(Path(workdir) if workdir is not None else spec.campaign.workdir)
        self.layout.create()
        self.coupled = coupled
        m = spec.macro
        self.every = {name: _steps(getattr(m, f"{name}_interval_ns"), m.dt_ns, name) for name in ("output", "reload", "checkpoint")}
        if self.layout.checkpoint.exists():
            self.model = MacroModel.restore(self.layout.checkpoint, m, compute=compute)
            self.fresh = False
        else:
            self.model = MacroModel(self._initial_parameters(), m, seed=spec.campaign.seed, compute=compute)
            self.fresh = True

    def _initial_parameters(self) -> MacroParameters:
        """The newest version in the folder; else the spec's file or the defaults, stored as version 1."""
        latest = latest_parameters(self.layout.params)
        if latest is not None:
            return latest
        m = self.spec.macro
        params = load_parameters(m.parameters) if m.parameters is not None else default_parameters(m.temperature_K)
        version = write_parameters(self.layout.params, params)
        return params.replace(version=version)

    def run(self, until_ns: float = math.inf, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Run until ``until_ns``; True when reached, False after a clean early stop (checkpointed)."""
        model, every = self.model, self.every
        target = math.inf if math.isinf(until_ns) else int(math.floor(until_ns / model.settings.dt_ns + 1e-9))
        if self.fresh:
            self._output()
            self.fresh = False
        while model.step_count < target:
            if should_stop():
                model.checkpoint(self.layout.checkpoint)
                log.info("macro stopped cleanly at t = %.0f ns", model.time_ns)
                return False
            model.step()
            k = model.step_count
            if k % every["output"] == 0:
                self._output()
            if self.coupled and k % every["reload"] == 0:
                self._reload()
            if k % every["checkpoint"] == 0:
                model.checkpoint(self.layout.checkpoint)
        model.checkpoint(self.layout.checkpoint)
        return True

    def _output(self) -> None:
        frame = self.model.frame()
        write_frame(self.layout.frames, frame)
        write_patches(self.layout.patches, extract_patches(frame, self.spec.patches))
        log.info("frame t = %.0f ns (parameters v%d, %d RAS, %d positivity repairs so far)",
                 frame.time_ns, frame.param_version, len(frame.ras_ids), self.model.positivity_fixes)

    def _reload(self) -> None:
        latest = latest_parameters(self.layout.params)
        if latest is not None and latest.version > self.model.params.version:
            self.model.set_parameters(latest)


def _steps(interval_ns: float, dt_ns: float, name: str) -> int:
    n = max(1, round(interval_ns / dt_ns))
    if abs(n * dt_ns - interval_ns) > 1e-6 * interval_ns:
        log.warning("%s interval %.4g ns is not a whole number of %.4g ns steps; using %d steps", name, interval_ns, dt_ns, n)
    return n
