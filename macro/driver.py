"""The macro model as a campaign job: frames, patches, parameter reloads, checkpoints.

It writes under the campaign folder (:class:`~mummi.core.layout.CampaignLayout`,
the contract with the coordinator): frames in ``macro/frames/``, parameter
versions in ``macro/params/`` (the feedback adds new ones), its checkpoint and
status record in ``macro/``, and the patches of each frame in ``patches/``.

A run resumes from the checkpoint when there is one, so running it again after a
crash or a clean stop continues the same trajectory (frames after the checkpoint
are recomputed identically and replace their earlier copies). Every
``reload_interval_ns`` a coupled run switches to the newest parameter version;
frames record the version that produced them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

from mummi.core.layout import CampaignLayout
from mummi.core.spec import CampaignSpec
from mummi.macro.frames import write_frame
from mummi.macro.model import MacroModel
from mummi.macro.params import MacroParameters, latest_parameters, spec_parameters, write_parameters
from mummi.macro.patches import extract_patches, write_patches

log = logging.getLogger(__name__)


class MacroRun:
    """Open (resume or start) the macro model of a campaign and run it with its outputs."""

    def __init__(
        self, spec: CampaignSpec, workdir: str | Path | None = None, *, coupled: bool = True, compute: str | None = None
    ) -> None:
        self.spec = spec
        self.layout = CampaignLayout(Path(workdir) if workdir is not None else spec.campaign.workdir)
        self.layout.create_macro_dirs()
        self.coupled = coupled
        m = spec.macro
        self.every = {
            name: _steps(getattr(m, f"{name}_interval_ns"), m.dt_ns, name)
            for name in ("output", "reload", "checkpoint")
        }
        if self.layout.macro_checkpoint.exists():
            self.model = MacroModel.restore(self.layout.macro_checkpoint, m, compute=compute)
            self.fresh = False
        else:
            self.model = MacroModel(self._initial_parameters(), m, seed=spec.campaign.seed, compute=compute)
            self.fresh = True

    def _initial_parameters(self) -> MacroParameters:
        """The newest version in the folder; else the spec's file or the defaults, stored as version 1."""
        latest = latest_parameters(self.layout.macro_params)
        if latest is not None:
            return latest
        params = spec_parameters(self.spec.macro)
        version = write_parameters(self.layout.macro_params, params)
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
                model.checkpoint(self.layout.macro_checkpoint)
                log.info("macro stopped cleanly at t = %.0f ns", model.time_ns)
                return False
            model.step()
            k = model.step_count
            if k % every["output"] == 0:
                self._output()
            if self.coupled and k % every["reload"] == 0:
                self._reload()
            if k % every["checkpoint"] == 0:
                model.checkpoint(self.layout.macro_checkpoint)
        model.checkpoint(self.layout.macro_checkpoint)
        return True

    def _output(self) -> None:
        frame = self.model.frame()
        write_frame(self.layout.macro_frames, frame)
        write_patches(self.layout.patches, extract_patches(frame, self.spec.patches))
        log.info(
            "frame t = %.0f ns (parameters v%d, %d RAS, %d positivity repairs so far)",
            frame.time_ns,
            frame.param_version,
            len(frame.ras_ids),
            self.model.positivity_fixes,
        )

    def _reload(self) -> None:
        latest = latest_parameters(self.layout.macro_params)
        if latest is not None and latest.version > self.model.params.version:
            self.model.set_parameters(latest)


def _steps(interval_ns: float, dt_ns: float, name: str) -> int:
    n = max(1, round(interval_ns / dt_ns))
    if abs(n * dt_ns - interval_ns) > 1e-6 * interval_ns:
        log.warning(
            "%s interval %.4g ns is not a whole number of %.4g ns steps; using %d steps", name, interval_ns, dt_ns, n
        )
    return n
