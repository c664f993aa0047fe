"""The resource policy: how the allocation is shared between the macro model, setups, sims and analyses.

Sims take GPUs (one each by default) plus a few cores; each sim has its in situ
analysis beside it on the same node; createsims take blocks of cores; the macro
model keeps its own share for the whole campaign. The policy turns the spec into
the numbers the coordinator schedules by; the backend enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass

from mummi.workflow.spec import CampaignSpec


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
        r = spec.resources
        total_cores = r.nodes * r.cores_per_node - r.wfm_cores
        total_gpus = r.nodes * r.gpus_per_node
        macro = spec.macro.resources
        cores = total_cores - macro.tasks * macro.cores_per_task
        gpus = total_gpus - macro.tasks * macro.gpus_per_task
        sim, analysis = spec.sim.resources, spec.analysis.resources
        per_sim_cores = sim.tasks * sim.cores_per_task + analysis.tasks * analysis.cores_per_task
        per_sim_gpus = sim.tasks * sim.gpus_per_task
        if cores < per_sim_cores or (per_sim_gpus and gpus < per_sim_gpus):
            raise ValueError(
                f"the allocation ({total_cores} cores, {total_gpus} GPUs after wfm_cores) leaves no room for one sim "
                f"({per_sim_cores} cores with its analysis, {per_sim_gpus} GPUs) beside the macro model; "
                "raise resources.cores_per_node/gpus_per_node/nodes or lower the jobs' resources"
            )
        by_gpu = gpus // per_sim_gpus if per_sim_gpus else cores
        sim_slots = max(1, min(by_gpu, cores // per_sim_cores))
        setup = spec.createsim.resources
        spare = cores - sim_slots * per_sim_cores
        createsim_slots = max(1, spare // (setup.tasks * setup.cores_per_task))
        return cls(total_cores, total_gpus, sim_slots, createsim_slots, spec.createsim.buffer)
