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
        """The policy of ``spec``; :class:`SpecConflict` when no node can hold one sim beside its analysis.

        Node by node: a sim and its in situ analysis share one node; the first node
        also holds the coordinator's ``wfm_cores`` and the macro model.
        """
        r, macro = spec.resources, spec.macro.resources
        sim, analysis = spec.sim.resources, spec.analysis.resources
        per_sim_cores = sim.tasks * sim.cores_per_task + analysis.tasks * analysis.cores_per_task
        per_sim_gpus = sim.tasks * sim.gpus_per_task
        macro_tasks_per_node = -(-macro.tasks // macro.nodes)
        macro_cores, macro_gpus = (
            macro_tasks_per_node * macro.cores_per_task,
            macro_tasks_per_node * macro.gpus_per_task,
        )
        free = [(r.cores_per_node, r.gpus_per_node) for _ in range(r.nodes)]
        free[0] = (free[0][0] - r.wfm_cores, free[0][1])
        for i in range(min(macro.nodes, r.nodes)):
            free[i] = (free[i][0] - macro_cores, free[i][1] - macro_gpus)
        sim_slots = sum(_sims_on(cores, gpus, per_sim_cores, per_sim_gpus) for cores, gpus in free)
        if sim_slots == 0:
            if per_sim_gpus and max(gpus for _, gpus in free) < per_sim_gpus:
                raise SpecConflict(
                    "sim.resources.gpus_per_task",
                    f"the allocation leaves no room for one sim: one sim needs {per_sim_gpus} GPUs on a node, a node "
                    f"has {r.gpus_per_node} (resources.gpus_per_node) and the macro model keeps {macro_gpus} of its "
                    "node's (macro.resources.gpus_per_task); lower sim.resources.gpus_per_task or "
                    "macro.resources.gpus_per_task, or raise resources.gpus_per_node or resources.nodes",
                )
            raise SpecConflict(
                "sim.resources.cores_per_task",
                f"the allocation leaves no room for one sim: one sim with its analysis needs {per_sim_cores} cores on "
                f"one node, a node has {r.cores_per_node} (resources.cores_per_node; the first one less wfm_cores "
                f"and the macro model's {macro_cores}); lower sim/analysis/macro.resources.cores_per_task or raise "
                "resources.cores_per_node",
            )
        total_cores = r.nodes * r.cores_per_node - r.wfm_cores
        spare = total_cores - min(macro.nodes, r.nodes) * macro_cores - sim_slots * per_sim_cores
        setup = spec.createsim.resources
        createsim_slots = max(1, spare // (setup.tasks * setup.cores_per_task))
        return cls(total_cores, r.nodes * r.gpus_per_node, sim_slots, createsim_slots, spec.createsim.buffer)


def _sims_on(cores: int, gpus: int, per_sim_cores: int, per_sim_gpus: int) -> int:
    """How many sims, each beside its analysis, fit in ``cores`` and ``gpus`` of one node."""
    by_cores = max(0, cores) // per_sim_cores
    return min(by_cores, max(0, gpus) // per_sim_gpus) if per_sim_gpus else by_cores
