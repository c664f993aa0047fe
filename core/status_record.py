"""Status records: the JSON file a job writes last to say how its work ended.

Every job kind writes one (``<stage>.status.json``): the sim-folder jobs in their
sim folder (:mod:`mummi.core.simdir`), the macro model in ``macro/``
(:class:`~mummi.core.layout.CampaignLayout`). A record holds the
:class:`~mummi.core.states.Outcome` under ``state``, the stage, the time, and the
job's own facts. Written atomically, so a record is whole or absent.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from mummi.core.atomic import atomic_write_text
from mummi.core.states import Outcome

log = logging.getLogger(__name__)


def status_text(stage: str, outcome: Outcome, **info: Any) -> str:
    """A status record's JSON."""
    return (
        json.dumps({"state": Outcome(outcome).value, "stage": str(stage), "time": time.time(), **info}, indent=1) + "\n"
    )


def write_status_record(path: str | Path, stage: str, outcome: Outcome, *, durable: bool = True, **info: Any) -> Path:
    """Record ``outcome`` of ``stage`` at ``path`` (the job's last write; ``durable``: fsynced)."""
    return atomic_write_text(path, status_text(stage, outcome, **info), durable=durable)


def read_status_record(path: str | Path) -> dict[str, Any] | None:
    """The record at ``path`` with ``state`` as an :class:`Outcome`; None when there is none (or it is unreadable)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        record["state"] = Outcome(record["state"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("%s: not a status record (%s); treated as absent", path, err)
        return None
    return dict(record)


def outcome_of(path: str | Path) -> Outcome | None:
    record = read_status_record(path)
    return None if record is None else record["state"]
