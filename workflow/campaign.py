"""Creating, resuming or replacing the campaign in a workdir (its layout is :mod:`mummi.core.layout`)."""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable

from mummi import __version__
from mummi.core.atomic import atomic_write_text
from mummi.core.layout import DB_NAME, SPEC_NAME, SUBDIRS, CampaignLayout
from mummi.core.spec import CampaignSpec
from mummi.workflow.run_lock import CampaignBusy, hold
from mummi.workflow.store import StateStore, StoreError

log = logging.getLogger(__name__)


class CampaignError(Exception):
    """The workdir cannot be used as asked (an existing campaign, another campaign's folder)."""


def prepare(spec: CampaignSpec, *, fresh: bool = False, force: bool = False) -> tuple[CampaignLayout, StateStore, bool]:
    """Create the campaign in ``spec.campaign.workdir`` or reopen the one there.

    Returns the directory, the open store and whether an existing campaign is resumed.
    ``fresh`` starts over and refuses to touch an existing campaign unless ``force``,
    in which case only the campaign's own files are removed. The campaign's lock
    (:mod:`~mummi.workflow.run_lock`) is held from here until the store is closed.
    """
    cdir = CampaignLayout(spec.campaign.workdir)
    if cdir.root.exists() and not cdir.root.is_dir():
        raise CampaignError(f"{cdir.root}: campaign.workdir exists and is not a directory; choose another workdir")
    resuming = cdir.holds_campaign()
    release: Callable[[], None] | None = None
    if resuming and fresh:
        if not force:
            raise CampaignError(
                f"{cdir.root}: already holds a campaign; --fresh would overwrite it. "
                "Run without --fresh to resume it, add --force to delete "
                "it and start over, or choose another campaign.workdir"
            )
        release = _lock(cdir)
        _remove_campaign(cdir)
        resuming = False

    try:
        if resuming:
            store = StateStore(cdir.db)  # before anything is made: it may not be a campaign's
            release = _lock(cdir, store)
            cdir.create()
        else:
            cdir.create()
            release = release or _lock(cdir)
            store = StateStore(cdir.db)
    except StoreError as err:
        if release is not None:
            release()
        raise CampaignError(str(err)) from err
    store.on_close(release)
    spec_text = spec.to_yaml()
    digest = hashlib.sha256(spec_text.encode()).hexdigest()
    if resuming:
        name = store.get_meta("campaign")
        if name != spec.campaign.name:
            store.close()
            raise CampaignError(
                f"{cdir.root}: holds campaign {name!r}, but the spec names {spec.campaign.name!r}; "
                "use that campaign's spec, or another campaign.workdir for a new campaign"
            )
        runs = store.get_meta("runs", 0) + 1
        changed = store.get_meta("spec_sha256") != digest
        store.set_meta("runs", runs)
        store.set_meta("spec_sha256", digest)
        store.record_event("campaign.resumed", spec.campaign.name, run=runs, spec_changed=changed)
        if changed:
            log.warning("the spec differs from the one the campaign last ran with; the new settings apply from now on")
    else:
        with store.transaction():
            store.set_meta("campaign", spec.campaign.name)
            store.set_meta("created_at", time.time())
            store.set_meta("mummi_version", __version__)
            store.set_meta("seed", spec.campaign.seed)
            store.set_meta("runs", 1)
            store.set_meta("spec_sha256", digest)
            store.record_event("campaign.created", spec.campaign.name)
    atomic_write_text(cdir.spec_copy, spec_text)
    return cdir, store, resuming


def _lock(cdir: CampaignLayout, store: StateStore | None = None) -> Callable[[], None]:
    try:
        return hold(cdir.root)
    except CampaignBusy as err:
        if store is not None:
            store.close()
        raise CampaignError(str(err)) from err


def _remove_campaign(cdir: CampaignLayout) -> None:
    log.warning("removing the existing campaign in %s (--fresh --force)", cdir.root)
    for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", SPEC_NAME):
        (cdir.root / name).unlink(missing_ok=True)
    for sub in SUBDIRS:
        shutil.rmtree(cdir.root / sub, ignore_errors=True)
