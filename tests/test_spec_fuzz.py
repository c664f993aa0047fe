"""Property tests of the spec loader: any file gives a spec or the project's own error, never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mummi.core.spec_loader import SpecError, load_spec

SECTIONS = ("campaign", "resources", "macro", "patches", "encoder", "sampler", "createsim", "sim", "analysis",
            "feedback", "checkpoint")  # fmt: skip
KEYS = ("name", "workdir", "seed", "stop", "max_sims", "k", "candidate_cap", "nodes", "backend", "engine", "length_ns",
        "bin_nm", "r_max_nm", "damping", "resources", "walltime_min", "gpus_per_task", "index")  # fmt: skip
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))  # fmt: skip
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
                      max_leaves=12)  # fmt: skip
specs = st.dictionaries(st.sampled_from(SECTIONS), st.one_of(values, st.dictionaries(st.sampled_from(KEYS), values)),
                        max_size=5)  # fmt: skip


def loads_or_refuses(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_spec(path)
        except SpecError as err:
            assert str(path) in str(err)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_any_mapping_gives_a_spec_or_a_spec_error(data: dict) -> None:
    loads_or_refuses(yaml.safe_dump(data))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_spec_or_a_spec_error(text: str) -> None:
    loads_or_refuses(text)
