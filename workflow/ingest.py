"""Patches to candidates: read new patch files, encode them, feed the sampler, and keep the sampler recoverable.

The sampler is deterministic given the sequence of its operations, so the store
logs that sequence (``sampler.add`` of a patch file, ``sampler.select`` of n) in
the same transactions that record the patches and selections. The latents of each
frame are cached. A sampler checkpoint names the last operation it
contains; on resume the operations after it are replayed on the cached latents,
and every replayed selection must equal the one in the store.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from mummi.core.atomic import atomic_savez
from mummi.core.layout import CampaignLayout
from mummi.core.patch_input import PatchInput
from mummi.core.spec import CampaignSpec
from mummi.core.states import PatchState
from mummi.core.unreadable import reading
from mummi.sampler import checkpoint as ckpt
from mummi.sampler.dynim import DynimSampler, Selection
from mummi.sampler.kernels import sampler_threads
from mummi.workflow.patch_source import PatchSource
from mummi.workflow.store import StateStore

log = logging.getLogger(__name__)

ADD, SELECT = "sampler.add", "sampler.select"
CHECKPOINT_DIR = "checkpoint"
"""The sampler's checkpoint folder under ``sampler/``, its generations inside."""


class ReplayError(Exception):
    """The sampler replayed from its checkpoint disagrees with the store."""


class Ingest:
    """Frames of patches to candidates, and candidates to selections: the sampler and its log.

    Owns the DynIm sampler, the latent caches, the patch rows and selections in
    the store, and the sampler's checkpoints; after a restart it replays the
    store's log onto the last checkpoint. It never starts a job and never decides
    how many patches to select (the coordinator asks).
    """

    def __init__(self, spec: CampaignSpec, cdir: CampaignLayout, store: StateStore, source: PatchSource) -> None:
        self.spec, self.cdir, self.store, self.source = spec, cdir, store, source
        cdir.latents.mkdir(parents=True, exist_ok=True)
        if spec.resources.wfm_cores:  # the sampler's compiled loops stay on the coordinator's cores
            sampler_threads(spec.resources.wfm_cores)
        self.sampler = recover_sampler(spec, cdir, store)
        self._ingested = {Path(f).name for f in store.patch_files()}

    # --------------------------------------------------------------- ingest
    def new_frames(self) -> list[str]:
        """Frames ready and not yet ingested, oldest first."""
        return self.source.due(len(self._ingested), self._ingested.__contains__)

    def ingest(self, name: str) -> int:
        """Record, encode and offer to the sampler every patch of one frame; returns the count."""
        frame = self.source.read(name)
        write_latents(latents_cache(self.cdir, name), frame.ids, frame.latents)  # what a replay of the sampler reads
        rows = [(pid, frame.time_ns, int(ras), name) for pid, ras in zip(frame.ids, frame.ras_ids)]
        # The sampler first: it refuses bad input without changing, so nothing unreplayable is recorded.
        self.sampler.add_candidates(frame.ids, frame.latents)
        with self.store.transaction():
            self.store.add_patches(rows)
            self.store.set_patch_states(frame.ids, PatchState.CANDIDATE)
            self.store.record_event(ADD, name, n=len(frame.ids))
            self.store.set_meta("macro_time_ns", frame.time_ns)
        self._ingested.add(name)
        return len(frame.ids)

    def patch_input(self, patch_id: str) -> PatchInput:
        return self.source.patch_input(self.store.patch_file(patch_id).name, patch_id)

    # ---------------------------------------------------------------- select
    def select(self, n: int, first_sim_number: int) -> list[tuple[Selection, str]]:
        """Pick ``n`` patches and record them (with their sim ids) in one transaction."""
        picks = self.sampler.select(n)
        named = [(pick, f"sim-{first_sim_number + i:06d}") for i, pick in enumerate(picks)]
        with self.store.transaction():
            for pick, sim_id in named:
                self.store.record_selection(pick.id, sim_id, None if not np.isfinite(pick.score) else float(pick.score))
            self.store.record_event(SELECT, None, n=n, ids=[p.id for p in picks])
        return named

    # ------------------------------------------------------------ checkpoint
    def checkpoint(self) -> None:
        """Save the sampler as a new generation, with the id of the last store event it reflects.

        The store names the current generation; the older ones go once it does, so a crash at
        any moment leaves the one the store names.
        """
        last = self.store.last_event_id()
        saved = self.store.get_meta("sampler_checkpoint")
        if saved is not None and saved["event_id"] == last:
            return
        target = self.cdir.sampler / CHECKPOINT_DIR
        base = saved.get("generation") if saved is not None and saved["dir"] == CHECKPOINT_DIR else None
        generation = self.sampler.checkpoint(target, generation=(base or 0) + 1, base=base, prune=False)
        self.store.set_meta("sampler_checkpoint", {"dir": CHECKPOINT_DIR, "generation": generation, "event_id": last})
        ckpt.prune(target, generation)
        if saved is not None and saved["dir"] != CHECKPOINT_DIR:  # one folder per checkpoint, as before
            shutil.rmtree(self.cdir.sampler / saved["dir"], ignore_errors=True)


def latents_cache(cdir: CampaignLayout, frame: str) -> Path:
    return cdir.latents / f"{Path(frame).stem}.npz"


def write_latents(path: Path, ids: list[str], latents: np.ndarray) -> None:
    atomic_savez(path, ids=np.array(ids, dtype=str), latents=latents)


def read_latents(path: Path) -> tuple[list[str], np.ndarray]:
    """A frame's cached patch ids and latents."""
    with reading(path, "latent cache"), np.load(path, allow_pickle=False) as cached:
        return cached["ids"].tolist(), cached["latents"]


def recover_sampler(spec: CampaignSpec, cdir: CampaignLayout, store: StateStore,
                    history: Path | None = None) -> DynimSampler:  # fmt: skip
    """The sampler as the store's log has it: its last checkpoint, with the operations recorded after it replayed.

    Raises :class:`ReplayError` when a replayed selection differs from the recorded one. The sampler's event
    history continues in ``history`` (default: the campaign's; another file leaves the campaign's alone).
    """
    saved = store.get_meta("sampler_checkpoint")
    history = history or cdir.sampler_history
    if saved is None:
        sampler = DynimSampler(spec.encoder.latent_dim, spec.sampler, seed=spec.campaign.seed, history=history)
        since = 0
    else:
        sampler = DynimSampler.restore(cdir.sampler / saved["dir"], history=history, generation=saved.get("generation"))
        since = saved["event_id"]
    replayed = 0
    for event in store.events([ADD, SELECT], since_id=since):
        if event.kind == ADD:
            sampler.add_candidates(*read_latents(latents_cache(cdir, str(event.subject))))
        else:
            got = [p.id for p in sampler.select(event.data["n"])]
            if got != event.data["ids"]:
                raise ReplayError(f"replayed selection {got} differs from the recorded {event.data['ids']}")
        replayed += 1
    if replayed:
        log.info("replayed %d sampler operations recorded after its last checkpoint", replayed)
    return sampler
