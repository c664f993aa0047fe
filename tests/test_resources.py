"""The resource policy that shares an allocation between macro model, setups, sims and analyses."""

from __future__ import annotations

import pytest
import yaml

from mummi.core.resources import ResourcePolicy
from mummi.core.spec import CampaignSpec


def spec(**sections) -> CampaignSpec:
    data = {"campaign": {"name": "t", "workdir": "/tmp/t"}, **sections}
    return CampaignSpec.model_validate(yaml.safe_load(yaml.safe_dump(data)))


def test_sims_are_limited_by_gpus_and_setups_use_spare_cores():
    s = spec(
        resources={"nodes": 4, "cores_per_node": 40, "gpus_per_node": 4, "wfm_cores": 2},
        macro={"resources": {"cores_per_task": 8, "gpus_per_task": 1}},
        sim={"resources": {"cores_per_task": 6, "gpus_per_task": 1}},
        analysis={"resources": {"cores_per_task": 3}},
        createsim={"resources": {"cores_per_task": 12}, "buffer": 5},
    )
    p = ResourcePolicy.from_spec(s)
    assert (p.total_cores, p.total_gpus) == (158, 16)
    assert p.sim_slots == 15  # 16 GPUs less the macro model's
    assert p.createsim_slots == (158 - 8 - 15 * 9) // 12
    assert p.buffer == 5


def test_sims_are_limited_by_cores_when_gpus_are_plenty():
    p = ResourcePolicy.from_spec(spec(resources={"cores_per_node": 8, "gpus_per_node": 8}))
    assert p.sim_slots == (8 - 1) // 2


def test_an_allocation_without_room_for_a_sim_is_refused():
    with pytest.raises(ValueError, match="leaves no room for one sim"):
        ResourcePolicy.from_spec(
            spec(resources={"cores_per_node": 2, "gpus_per_node": 1}, macro={"resources": {"gpus_per_task": 1}})
        )


def test_sims_are_packed_node_by_node_with_their_analysis():
    # 2 nodes of 3 cores: a sim and its analysis (2 cores) fit once per node, though 5 cores are free in all.
    p = ResourcePolicy.from_spec(spec(resources={"nodes": 2, "cores_per_node": 3, "gpus_per_node": 2}))
    assert p.sim_slots == 2
    # the macro model's GPU leaves its node one GPU short of a 2-GPU sim; the other node takes one.
    p = ResourcePolicy.from_spec(
        spec(
            resources={"nodes": 2, "cores_per_node": 8, "gpus_per_node": 2},
            macro={"resources": {"gpus_per_task": 1}},
            sim={"resources": {"gpus_per_task": 2}},
        )
    )
    assert p.sim_slots == 1
