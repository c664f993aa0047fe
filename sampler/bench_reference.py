"""LLNL's reference DynIm (LLNL/dynim) driven through the same steps as ours, for measured side-by-side ratios.

The reference is not a dependency: it is imported from ``--reference DIR`` (default:
``$MUMMI_DYNIM_REFERENCE``, else ``shared/vendor/dynim`` beside this checkout) and
needs numpy, faiss and pyyaml. Its API: ``SamplerImportance`` with an exact
``HDSpace`` (faiss ``IndexFlatL2``); ``add_candidates`` takes ``HDPoint`` objects
(made inside the timed add, as a caller must); ``select`` ranks every candidate by
its mean distance to its 10 nearest selected points, keeps the ``buffer_size`` best
and confirms the top ones of that one ranking; ``get_weights`` searches every
non-selected point's nearest selected point. It always writes its history CSV, into
a temporary workspace here.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import numpy as np

from mummi.sampler.bench_replay import timed_phases

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "vendor" / "dynim"
REFERENCE_K = 10  # SamplerImportance._update_ranks' fixed k


def reference_dir(given: str | None) -> Path:
    return Path(given or os.environ.get("MUMMI_DYNIM_REFERENCE") or DEFAULT_DIR)


def load_reference(directory: Path) -> tuple[ModuleType | None, str]:
    """The reference's ``dynim`` package, or None and why it could not be imported."""
    if not (directory / "dynim" / "__init__.py").is_file():
        return None, f"{directory}: no dynim package there (give --reference DIR or set MUMMI_DYNIM_REFERENCE)"
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module("dynim"), ""
    except ImportError as err:
        return None, f"{directory}: the reference does not import here ({err}); it needs numpy, faiss and pyyaml"
    finally:
        sys.path.remove(str(directory))


def drive_reference(
    dynim: ModuleType,
    dim: int,
    steps: Iterable[tuple[np.ndarray, int]],
    interleave: bool,
    cap: int,
    warmup: int,
    seed: int,
) -> dict[str, float]:
    """Seconds per phase of the reference on (batch, burst) ``steps``, timed as ours (``HDPoint`` objects made
    within the add, as a caller must)."""
    np.random.seed(seed)  # the reference's random warm-up ranks
    with tempfile.TemporaryDirectory(prefix="dynim-reference-") as workspace:
        space = dynim.HDSpace()
        space.setup(dim, "exact")
        sampler = dynim.SamplerImportance("bench", workspace, buffer_size=cap, min_rand_b4_importance=warmup)
        sampler.set_hdspace(space)

        def add(ids: list[str], x: np.ndarray) -> None:
            sampler.add_candidates([dynim.HDPoint(i, row) for i, row in zip(ids, x)])

        return timed_phases(add, sampler.select, sampler.get_weights, steps, interleave)
