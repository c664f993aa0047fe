"""The resource policy: how the allocation is shared between the macro model, setups, sims and analyses.

Sims take GPUs (one each by default) plus a few cores; each sim has its in situ
analysis beside it on the same node; createsims take blocks of cores; the macro
model keeps its own share for the whole campaign. The policy turns the spec into
the numbers the coordinator schedules by; the backend enforces them. A spec whose
allocation leaves no room for one sim is refused when it is validated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mummi.core.spec import SpecConflict

if TYPE_CHECKING:
    from mummi.core.spec import CampaignSpec


@dataclass(frozen=True)
class ResourcePolicy:
    total_cores: int
    total_gpus: int
    sim_slots: int
    """Sims (each with its analysis) that may run at once."""
    createsim_slots: int
    """Createsims that may run at once, beside the sims."""
    buffer: int
    """Set-up sims kept ready (or being set up) beyond the free sim slots."""

    @classmethod
    def from_spec(cls, spec: CampaignSpec) -> ResourcePolicy:
        """The policy of ``spec``; :class:`SpecConflict` when the allocation cannot hold one sim."""
        r = spec.resources
        total_cores = r.nodes * r.cores_per_node - r.wfm_cores
        total_gpus = r.nodes * r.gpus_per_node
        macro = spec.macro.resources
        macro_cores, macro_gpus = macro.tasks * macro.cores_per_task, macro.tasks * macro.gpus_per_task
        cores, gpus = total_cores - macro_cores, total_gpus - macro_gpus
        sim, analysis = spec.sim.resources, spec.analysis.resources
        per_sim_cores = sim.tasks * sim.cores_per_task + analysis.tasks * analysis.cores_per_task
        per_sim_gpus = sim.tasks * sim.gpus_per_task
        if per_sim_gpus and gpus < per_sim_gpus:
            raise SpecConflict(
                "sim.resources.gpus_per_task",
                "the allocation leaves no room for one sim: it has "
                f"{total_gpus} GPUs (resources.nodes x gpus_per_node), "
                f"the macro model keeps {macro_gpus} (macro.resources.gpus_per_task) and one sim needs {per_sim_gpus}; "
                "lower sim.resources.gpus_per_task or macro.resources.gpus_per_task, or raise resources.gpus_per_node",
            )
        if cores < per_sim_cores:
            raise SpecConflict(
                "sim.resources.cores_per_task",
                f"the allocation leaves no room for one sim: it has {total_cores} cores for jobs (resources.nodes x "
                f"cores_per_node - wfm_cores), the macro model keeps {macro_cores} and one sim with its analysis needs "
                f"{per_sim_cores}; lower sim/analysis/macro.resources.cores_per_task or raise resources.cores_per_node",
            )
        by_gpu = gpus // per_sim_gpus if per_sim_gpus else cores
        sim_slots = max(1, min(by_gpu, cores // per_sim_cores))
        setup = spec.createsim.resources
        spare = cores - sim_slots * per_sim_cores
        createsim_slots = max(1, spare // (setup.tasks * setup.cores_per_task))
        return cls(total_cores, total_gpus, sim_slots, createsim_slots, spec.createsim.buffer)
