"""The campaign specification: typed, frozen settings for every section of a campaign YAML file.

Every section has defaults that make a laptop dry run work, so the smallest valid
spec is ``campaign: {name: x, workdir: runs/x}``. Unknown keys are errors: a typo
must never be silently ignored. The spec accepts only what this version of mummi
runs; every rule that can refuse a spec lives here (or in
:mod:`mummi.core.resources`), so ``mummi-run --validate`` catches it before a
campaign writes anything. Loading a file is :mod:`mummi.core.spec_loader`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mummi.core.lipids import N_CHANNELS, N_INNER

#: Scheduler backends this version runs; each has a factory in ``mummi.adapters.backends``.
Backend = Literal["local", "flux", "slurm", "parsl", "simulated"]
BACKENDS: tuple[str, ...] = Backend.__args__  # type: ignore[attr-defined]
Device = Literal["auto", "cpu", "gpu"]
SimEngine = Literal["gromacs", "ddcmd", "mock"]
SetupEngine = Literal["gromacs", "mock"]
#: The createsim engine each sim engine starts from.
SETUP_ENGINE: dict[str, str] = {"gromacs": "gromacs", "ddcmd": "gromacs", "mock": "mock"}

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


class SpecConflict(ValueError):
    """A rule across several settings is broken; ``key`` is the setting to change (dotted path)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class Settings(BaseModel):
    """Base of every section: strict about unknown keys, immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --------------------------------------------------------------------- campaign
class StopSettings(Settings):
    """When the campaign ends: the first condition met stops it."""

    max_sims: PositiveInt | None = Field(40, description="Stop after this many sims have finished.")
    macro_time_us: PositiveFloat | None = Field(None, description="Stop when the macro model reaches this time (µs).")
    wall_time_h: PositiveFloat | None = Field(
        None, description="Stop after this much wall time in mummi-run (hours, summed over restarts)."
    )
    feedback_rounds: PositiveInt | None = Field(None, description="Stop after this many feedback rounds.")

    @model_validator(mode="after")
    def _at_least_one(self) -> StopSettings:
        if all(v is None for v in self.model_dump().values()):
            raise ValueError("set at least one of max_sims, macro_time_us, wall_time_h, feedback_rounds")
        return self


class CampaignSettings(Settings):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=64,
        description="Campaign name: letters, digits, '_', '.', '-'.",
    )
    workdir: Path = Field(description="Campaign directory; everything the campaign writes lives under it.")
    seed: NonNegativeInt = Field(0, description="Seed from which all randomness of the campaign flows.")
    stop: StopSettings = StopSettings()
    min_free_mb: NonNegativeFloat = Field(
        1024.0,
        description=(
            "Stop resumably (exit 75) while the workdir's file system has less free space than this, before a "
            "full disk fails jobs; run again once space is freed. 0: never check."
        ),
    )
    chain: NonNegativeInt = Field(
        0,
        description=(
            "Follow-up allocations a run in a batch allocation submits for itself (one at a time, when it stops "
            "resumably) until the campaign is done: the same sbatch script (Slurm) or flux batch jobspec (Flux)."
        ),
    )

    @field_validator("workdir")
    @classmethod
    def _printable(cls, workdir: Path) -> Path:
        if any(ord(c) < 32 or ord(c) == 127 for c in str(workdir)):
            raise ValueError("the path holds a newline or another control character; choose one without")
        return workdir


# -------------------------------------------------------------------- resources
class JobResources(Settings):
    """What one job asks of the scheduler."""

    nodes: PositiveInt = 1
    tasks: PositiveInt = 1
    cores_per_task: PositiveInt = 1
    gpus_per_task: NonNegativeInt = 0
    walltime_min: PositiveFloat = 60.0


class FluxSettings(Settings):
    uri: str | None = Field(
        None, description="URI of the Flux instance to run jobs in; default: the enclosing one (FLUX_URI)."
    )


class SlurmSettings(Settings):
    job_id: str | None = Field(
        None, description="The allocation to run job steps in; default: the enclosing one (SLURM_JOB_ID)."
    )
    srun_args: list[str] = Field(default_factory=list, description="Extra srun options, one per list item.")
    mem_per_cpu_mb: PositiveInt | None = Field(
        None, description="--mem-per-cpu for every step or job, where memory is a consumable resource."
    )
    partition: str | None = Field(
        None, description="Outside an allocation: the partition each job is submitted to (default: the cluster's)."
    )
    account: str | None = Field(None, description="Outside an allocation: the account each job is charged to.")
    sbatch_args: list[str] = Field(
        default_factory=list, description="Outside an allocation: extra sbatch options for each job (e.g. --qos=…)."
    )


class ParslSettings(Settings):
    worker_init: str = Field("", description="Shell lines each Parsl worker block runs first (e.g. module loads).")
    provider: Literal["local", "slurm"] = Field(
        "local",
        description=(
            "'local': worker pools on this node, or over the resources.nodes nodes of the Slurm allocation "
            "mummi-run runs in (srun); 'slurm': each executor's workers in a Slurm job of its own (sbatch, srun)."
        ),
    )
    partition: str | None = Field(None, description="provider 'slurm': the partition of the workers' jobs.")
    account: str | None = Field(None, description="provider 'slurm': the account the workers' jobs are charged to.")
    scheduler_options: list[str] = Field(
        default_factory=list, description="provider 'slurm': extra sbatch options of the workers' jobs, one per item."
    )
    address: str | None = Field(
        None,
        description=(
            "The address workers reach the coordinator's interchange at; default: 127.0.0.1 on one node, "
            "else Parsl's choice among this node's interfaces."
        ),
    )

    @model_validator(mode="after")
    def _job_name_is_parsls(self) -> ParslSettings:
        if any(o.startswith(("--job-name", "-J")) for o in self.scheduler_options):
            raise ValueError(
                "scheduler_options: leave out --job-name (-J): Parsl names each executor's job, and its scripts "
                "by that name; two executors with one name overwrite each other's"
            )
        return self


class DurationModel(Settings):
    """How long a simulated job runs: lognormal around ``mean_min`` with relative spread ``spread``."""

    mean_min: PositiveFloat
    spread: NonNegativeFloat = 0.0


class SyntheticPatchSettings(Settings):
    """The replay's macro model: frames of synthetic latent vectors at the paper's rates (seed 000)."""

    per_frame: PositiveInt = Field(300, description="Patches per frame (one per RAS).")
    frame_interval_min: PositiveFloat = Field(
        2.933, description="Campaign time between frames (2,061,900 patches in 14 days at 300 per frame)."
    )
    total: PositiveInt = Field(2_061_900, description="Patches over the whole campaign; none arrive after.")
    spread: PositiveFloat = Field(1.0, description="Spread of a frame's latents around the drifting centre.")
    jump: NonNegativeFloat = Field(2.0, description="Size of the centre's jump after each feedback round.")
    macro_ns_per_min: PositiveFloat = Field(
        8.0, description="Macro time per minute of campaign time (the DDFT model's 11.5 µs/day)."
    )


class SimulatedSettings(Settings):
    """The ``simulated`` backend: jobs that run no process, on a virtual clock (README, "Sierra on a laptop")."""

    patches: SyntheticPatchSettings = SyntheticPatchSettings()

    createsim: DurationModel = DurationModel(mean_min=90.0, spread=0.2)
    sim_ns_per_day: PositiveFloat = Field(
        1020.0, description="Engine speed: a sim of sim.length_ns runs length / speed days (ddcMD: 1.02 µs/day)."
    )
    sim_speed_spread: NonNegativeFloat = Field(
        0.0, description="Relative spread of the engine speed from sim to sim (lognormal, drawn once per sim)."
    )
    analysis_lag_min: NonNegativeFloat = Field(
        1.0, description="An analysis ends this long after its sim (it follows the sim's frames)."
    )
    macro: DurationModel = Field(
        DurationModel(mean_min=14 * 1440.0), description="The macro job (and the pre-campaign) until it ends."
    )
    train: DurationModel = DurationModel(mean_min=60.0)
    fail_rate: NonNegativeFloat = Field(0.0, le=1.0, description="Fraction of jobs that exit non-zero part-way.")
    hang_rate: NonNegativeFloat = Field(0.0, le=1.0, description="Fraction of jobs that hang until their walltime.")
    node_mtbf_h: PositiveFloat | None = Field(
        None, description="Mean time between losses of one node (all its jobs fail with it); none: nodes never fail."
    )
    node_repair_min: PositiveFloat = Field(60.0, description="A lost node is back this long after its loss.")
    allocation_min: PositiveFloat | None = Field(
        None, description="Length of each (virtual) allocation; none: one allocation with no end."
    )
    tick_s: PositiveFloat = Field(
        60.0, description="The longest virtual time between two coordinator turns when no job ends sooner."
    )
    poll_s: NonNegativeFloat = Field(
        0.0,
        description=(
            "The coordinator's poll interval in virtual time: a turn handles every event of the next poll_s "
            "together, as a real coordinator polling that often would (0: a turn per event instant)."
        ),
    )
    kill_grace_s: NonNegativeFloat = Field(30.0, description="From SIGTERM at the walltime to the kill.")


class ResourceSettings(Settings):
    backend: Backend = Field(
        "local",
        description=(
            "'local': processes on this machine; 'flux': jobs in a Flux instance; "
            "'slurm': job steps in the Slurm allocation mummi-run runs in, or one sbatch job per job outside "
            "one; 'parsl': bash apps on Parsl HighThroughputExecutors (see README); 'simulated': jobs that run "
            "no process, on a virtual clock (resources.simulated)."
        ),
    )
    nodes: PositiveInt = 1
    cores_per_node: PositiveInt = Field(
        8,
        description=(
            "Cores per node; with the local backend they are scheduling "
            "slots (8 lets a 2-core laptop run the default campaign)."
        ),
    )
    gpus_per_node: NonNegativeInt = Field(
        2, description="GPU slots per node; with the local backend and the mock engine they are scheduling slots only."
    )
    wfm_cores: NonNegativeInt = Field(0, description="Cores kept free for the coordinator on its node.")
    allocation_walltime_min: PositiveFloat | None = Field(
        None,
        description=(
            "Allocation length when the backend cannot tell (the local backend; the Parsl workers' Slurm jobs, "
            "default 24 h)."
        ),
    )
    flux: FluxSettings = FluxSettings()
    slurm: SlurmSettings = SlurmSettings()
    parsl: ParslSettings = ParslSettings()
    simulated: SimulatedSettings = SimulatedSettings()


# ------------------------------------------------------------------------ macro
class MacroSettings(Settings):
    """The DDFT macro model (seed 000, Methods, 'The macro model')."""

    box_nm: PositiveFloat = Field(100.0, description="Edge L of the periodic square membrane (nm). Full scale: 1000.")
    grid_points: Annotated[int, Field(ge=8)] = Field(120, description="Grid points N per edge. Full scale: 1200.")
    n_ras: NonNegativeInt = Field(8, description="Number of RAS particles. Full scale: 300.")
    dt_ns: PositiveFloat = Field(20.0, description="Lipid-field time step (ns).")
    ras_dt_ps: PositiveFloat = Field(25.0, description="RAS Langevin time step (ps).")
    output_interval_ns: PositiveFloat = Field(200.0, description="Macro time between frames (ns).")
    reload_interval_ns: PositiveFloat = Field(
        1000.0, description="Macro time between checks for a newer parameter version (ns)."
    )
    checkpoint_interval_ns: PositiveFloat = Field(1000.0, description="Macro time between checkpoints (ns).")
    temperature_K: PositiveFloat = 310.0
    noise: bool = Field(True, description="Conserved thermal noise in the lipid dynamics.")
    ras_state_changes: bool = False
    parameters: Path | None = Field(None, description="Initial parameter file; default: the built-in set.")
    compute: Literal["auto", "numpy", "torch"] = "auto"
    pace_ns_per_s: PositiveFloat | None = Field(
        None,
        description=(
            "At most this much macro time per wall second in the campaign (not the pre-campaign); "
            "for dry runs, where the macro model would otherwise race ahead of the sims."
        ),
    )
    resources: JobResources = JobResources(cores_per_task=1, walltime_min=24 * 60.0)

    @model_validator(mode="after")
    def _steps_fit(self) -> MacroSettings:
        if self.ras_dt_ps * 1e-3 > self.dt_ns:
            raise ValueError("ras_dt_ps must not exceed dt_ns (RAS substeps happen inside one lipid step)")
        if self.output_interval_ns < self.dt_ns:
            raise ValueError("output_interval_ns must be at least dt_ns")
        return self


class PatchSettings(Settings):
    """Patches around each RAS (seed 000, 'Patches')."""

    size_nm: PositiveFloat = 30.0
    native_points: PositiveInt = Field(37, description="Native patch edge in grid points (odd: centred on the RAS).")
    block_widths: list[PositiveInt] = Field(
        default_factory=lambda: [7, 7, 9, 7, 7],
        description="Block widths of the coarse patch; they sum to native_points.",
    )

    @model_validator(mode="after")
    def _blocks_cover_patch(self) -> PatchSettings:
        if self.native_points % 2 == 0:
            raise ValueError(f"native_points must be odd so the patch is centred on the RAS, got {self.native_points}")
        if sum(self.block_widths) != self.native_points:
            raise ValueError(
                f"block_widths must sum to native_points ({self.native_points}), they sum to {sum(self.block_widths)}"
            )
        return self

    @property
    def coarse_points(self) -> int:
        return len(self.block_widths)


# ---------------------------------------------------------------------- encoder
class EncoderTrainingSettings(Settings):
    pre_campaign_ns: PositiveFloat = Field(
        2000.0, description="Length of the uncoupled macro run whose patches train the encoder (ns)."
    )
    epochs: PositiveInt = 40
    batch_size: PositiveInt = 256
    learning_rate: PositiveFloat = Field(
        1e-3, description="Adam's learning rate; default 1e-3 for the VAE, 3e-3 for the metric."
    )
    patience: PositiveInt = Field(5, description="Early stopping: epochs without validation improvement.")
    validation_fraction: Fraction = 0.1
    augment_rotations: bool = Field(True, description="VAE: train on the grid rotations too (the metric always does).")


class MetricSettings(Settings):
    """The learned patch metric of seed 002: loss weights, margins and the radial-profile feature.

    ``L = w_inv L_inv + w_rad L_rad + w_lab L_lab``; the defaults are the paper's selected model.
    """

    w_inv: NonNegativeFloat = Field(2.0, description="Weight of the invariance (hard-triplet) loss.")
    alpha_inv: PositiveFloat = Field(1.0, description="Margin between a patch's transformations and other patches.")
    w_rad: NonNegativeFloat = Field(2.0, description="Weight of the radial-profile proportionality loss.")
    lambda_rad: PositiveFloat = Field(0.1, description="Proportionality factor: d_z ≈ lambda_rad · d_Υ.")
    w_lab: NonNegativeFloat = Field(1.0, description="Weight of the label-separation (triplet) loss.")
    alpha_lab: PositiveFloat = Field(8.0, description="Margin between patches of different constellation classes.")
    profile_channels: list[Annotated[int, Field(ge=0, lt=N_CHANNELS)]] = Field(
        default_factory=lambda: list(range(N_INNER)),
        min_length=1,
        description="Channels of the radial-profile feature Υ (default: the 8 inner-leaflet lipids, where RAS sits).",
    )
    control_fraction: NonNegativeFloat = Field(
        0.25,
        description=(
            "No-protein control patches per RAS patch, cut from the pre-campaign frames at random points with no "
            "RAS inside the patch."
        ),
    )

    @model_validator(mode="after")
    def _some_loss(self) -> MetricSettings:
        if self.w_inv == self.w_rad == self.w_lab == 0:
            raise ValueError("at least one of w_inv, w_rad, w_lab must be positive")
        if len(set(self.profile_channels)) != len(self.profile_channels):
            raise ValueError(f"profile_channels has repeated channels: {self.profile_channels}")
        return self


#: The latent size of each encoder kind when the spec gives none: the VAE's 15 (seed 000), the metric's 9 (seed 002).
DEFAULT_LATENT_DIM: dict[str, int] = {"vae": 15, "metric": 9}
#: The learning rate of each encoder kind when the spec gives none (the metric learns its invariance faster at 3e-3).
DEFAULT_LEARNING_RATE: dict[str, float] = {"vae": 1e-3, "metric": 3e-3}


class EncoderSettings(Settings):
    kind: Literal["vae", "metric"] = Field(
        "vae",
        description=(
            "The patch encoder: 'vae', the VAE of seed 000 on 5×5 coarse patches; 'metric', the learned metric of "
            "seed 002 on native patches."
        ),
    )
    model: Path | None = Field(None, description="A trained model directory; default: train one in a pre-campaign.")
    latent_dim: PositiveInt = Field(15, description="Latent size; default 15 for the VAE, 9 for the metric.")
    device: Device = "auto"
    batch_size: PositiveInt = Field(4096, description="Inference batch size.")
    training: EncoderTrainingSettings = EncoderTrainingSettings()
    metric: MetricSettings = MetricSettings()

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_kind(cls, data: object) -> object:
        """Fill in the latent size and learning rate of the encoder kind where the spec leaves them out."""
        if not isinstance(data, dict) or data.get("kind") not in DEFAULT_LATENT_DIM:
            return data
        kind = data["kind"]
        data = {"latent_dim": DEFAULT_LATENT_DIM[kind], **data}
        training = data.get("training", {})
        if isinstance(training, EncoderTrainingSettings):
            if "learning_rate" not in training.model_fields_set:
                data["training"] = training.model_copy(update={"learning_rate": DEFAULT_LEARNING_RATE[kind]})
        elif isinstance(training, dict) and "learning_rate" not in training:
            data["training"] = {**training, "learning_rate": DEFAULT_LEARNING_RATE[kind]}
        return data


# ---------------------------------------------------------------------- sampler
class SamplerSettings(Settings):
    """The DynIm sampler (seed 000, 'Sampling of macro configurations')."""

    k: PositiveInt = Field(10, description="Neighbours in the novelty score.")
    candidate_cap: PositiveInt = Field(35_000, description="Capacity of the candidate queue C.")
    warmup: NonNegativeInt = Field(4, description="The first selections are uniformly random.")
    index: Literal["flat", "ivf", "hnsw"] = Field(
        "flat", description="'flat' is exact; 'ivf' and 'hnsw' approximate for very large S."
    )
    index_probe: PositiveInt | None = Field(
        None, description="Search effort of an approximate index: IVF nprobe (default 8) or HNSW efSearch (default 64)."
    )
    device: Device = "auto"
    normalize_weights: bool = False
    checkpoint_interval_s: PositiveFloat = 60.0


# ------------------------------------------------------------------------- jobs
class RetrySettings(Settings):
    max_retries: NonNegativeInt = 2
    backoff_s: NonNegativeFloat = Field(5.0, description="Delay before the first retry; doubles with each further one.")


class MockEngineSettings(Settings):
    """The dry run's MD engine: 2-D Langevin dynamics of a patch."""

    truth: Path | None = Field(
        None,
        description=(
            "The engine's hidden RAS-lipid potentials (JSON like "
            "adapters/forcefield/mock_truth.json); default: the built-in set."
        ),
    )
    beads_per_lipid_type: PositiveInt | None = Field(
        None,
        description=(
            "Simulate at most this many lipids of each channel (a "
            "random subset of the built membrane); None: all of them."
        ),
    )
    frames: PositiveInt = Field(200, description="Frames written over sim.length_ns.")
    steps_per_frame: PositiveInt = Field(
        20, description="Langevin steps per frame; the step is length_ns / (frames * steps_per_frame)."
    )
    lipid_diffusion_nm2_per_ns: PositiveFloat = Field(
        5.0,
        description="Lateral diffusion coefficient of a lipid bead (accelerated, so patches mix within a short sim).",
    )
    ras_diffusion_nm2_per_ns: PositiveFloat = Field(0.5, description="Lateral diffusion coefficient of a RAS bead.")
    lipid_repulsion_kj_mol: NonNegativeFloat = Field(
        5.0,
        description=(
            "Height of the soft lipid-lipid repulsion within a leaflet; 0 makes lipids ideal (the dilute limit)."
        ),
    )
    lipid_size_nm: PositiveFloat = Field(0.6, description="Range of the lipid-lipid soft repulsion.")
    ras_size_nm: PositiveFloat = Field(3.0, description="Range of the RAS-RAS soft repulsion.")
    checkpoint_every_frames: PositiveInt = Field(
        20, description="Frames between checkpoints; the trajectory grows in blocks of this many frames."
    )


class GromacsSettings(Settings):
    executable: str = "gmx"
    forcefield: Path | None = Field(
        None,
        description=(
            "Force-field directory, or the name of one shipped with mummi: mummi_cg (the default: a small "
            "implicit-solvent field for fast tests) or martini22 (Martini 2.2 with water, built with insane)."
        ),
    )
    threads: PositiveInt = 1
    mdrun_args: list[str] = Field(
        default_factory=list, description="Extra gmx mdrun options, one per list item (e.g. ['-nb', 'gpu'])."
    )


class DdcmdSettings(Settings):
    executable: str = "ddcMD"
    launcher: list[str] = Field(default_factory=list, description="Command prefix, e.g. ['jsrun', '-n1', '-g1'].")
    checkpoint_every_frames: PositiveInt = Field(
        50, description="Output frames between ddcMD checkpoints (snapshot directories)."
    )


class ProteinSettings(Settings):
    """A protein for Martini systems (the insane builder): structure and topology, e.g. MuMMI's KRAS model."""

    gro: Path = Field(description="GRO structure in the membrane frame: bilayer midplane at z = 0, cytoplasm below.")
    itp: Path = Field(description="Its GROMACS topology: one molecule type, atoms in the GRO's order.")
    pull_to_nm: PositiveFloat | None = Field(
        None,
        description=(
            "Distance below the midplane that the restrained equilibration pulls the protein's centre of mass to; "
            "None: no pulled stage."
        ),
    )


class CreatesimSettings(Settings):
    engine: SetupEngine = "mock"
    protein: ProteinSettings | None = Field(
        None, description="The protein of Martini systems; default: the force field's own (a RAS proxy in martini22)."
    )
    pull_ns: PositiveFloat = Field(
        0.5, description="Restrained equilibration that pulls the proteins onto the membrane (before equilibration_ns)."
    )
    lipids_per_cell: PositiveInt = Field(
        64, description="Lipids per 6x6 nm cell and leaflet (the campaign's value: 64)."
    )
    cell_nm: PositiveFloat = Field(6.0, description="Edge of one coarse cell; the membrane is 5 cells wide.")
    jitter: Annotated[float, Field(ge=0, lt=0.5)] = Field(
        0.2, description="Random displacement of lipids from their lattice sites, as a fraction of the lattice spacing."
    )
    em_steps: PositiveInt = 500
    equilibration_ns: PositiveFloat = 1.0
    buffer: NonNegativeInt = Field(2, description="Createsims kept running ahead of free GPU slots.")
    resources: JobResources = JobResources(cores_per_task=1, walltime_min=120.0)
    retry: RetrySettings = RetrySettings()


class SimSettings(Settings):
    engine: SimEngine = "mock"
    length_ns: PositiveFloat = Field(5.0, description="Production length per simulation (ns).")
    dt_fs: PositiveFloat = 20.0
    output_interval_ps: PositiveFloat = 100.0
    checkpoint_interval_min: PositiveFloat = 15.0
    stop_margin_min: PositiveFloat = Field(
        5.0, description="Stop cleanly (checkpoint and exit) this long before the job's walltime."
    )
    resources: JobResources = JobResources(cores_per_task=1, gpus_per_task=1, walltime_min=24 * 60.0)
    stall_min: PositiveFloat | None = Field(
        30.0,
        description=(
            "Cancel and retry a running sim whose trajectory has not grown for this long (a hung engine); "
            "None: only the walltime stops it. Larger than the wall time between two frames."
        ),
    )
    retry: RetrySettings = RetrySettings()
    gromacs: GromacsSettings = GromacsSettings()
    ddcmd: DdcmdSettings = DdcmdSettings()
    mock: MockEngineSettings = MockEngineSettings()


class AnalysisSettings(Settings):
    """In situ protein-lipid RDF analysis beside each sim."""

    bin_nm: PositiveFloat = 0.02
    r_max_nm: PositiveFloat = 12.0
    write_every_frames: PositiveInt = 20
    leaflet: Literal["inner", "outer", "both"] = "inner"
    contact_nm: PositiveFloat = Field(
        1.5, description="Lateral protein-lipid distance counted as a contact in the per-frame features."
    )
    leaflet_cutoff_nm: PositiveFloat = Field(
        1.5, description="Head-group distance cutoff of MDAnalysis' LeafletFinder."
    )
    poll_interval_s: PositiveFloat = 1.0
    resources: JobResources = JobResources(cores_per_task=1, walltime_min=24 * 60.0)

    @model_validator(mode="after")
    def _bins_fit(self) -> AnalysisSettings:
        if self.bin_nm >= self.r_max_nm:
            raise ValueError(f"bin_nm ({self.bin_nm}) must be smaller than r_max_nm ({self.r_max_nm})")
        return self


class FeedbackSettings(Settings):
    """Micro-to-macro feedback by iterative Boltzmann inversion."""

    enabled: bool = True
    interval_sims: PositiveInt = Field(
        8, description="Run a round after this many more sims have produced analysis counts."
    )
    interval_s: PositiveFloat | None = Field(None, description="Also run a round after this many seconds.")
    damping: Annotated[float, Field(gt=0, le=1)] = Field(
        0.5, description="Fraction of the Boltzmann-inversion correction applied per round."
    )
    min_sims: PositiveInt = 4
    start_h: NonNegativeFloat = Field(0.0, description="No round before this much campaign time (hours).")
    use_weights: bool = Field(True, description="Weight each sim's counts by its DynIm weight.")
    shell_nm: PositiveFloat | None = Field(
        None,
        description=(
            "Width of the radial shells on which macro and MD g(r) are compared; default two macro grid spacings."
        ),
    )
    r_max_nm: PositiveFloat = Field(8.0, description="Outer radius of the comparison.")
    relax_ns: NonNegativeFloat = Field(
        400.0,
        description=(
            "Macro frames this soon after a new parameter version "
            "are not yet relaxed and are left out of the comparison."
        ),
    )


class CheckpointSettings(Settings):
    end_margin_min: PositiveFloat = Field(5.0, description="Stop starting work this long before the allocation ends.")


# ------------------------------------------------------------------------- spec
class CampaignSpec(Settings):
    """A whole campaign."""

    campaign: CampaignSettings
    resources: ResourceSettings = ResourceSettings()
    macro: MacroSettings = MacroSettings()
    patches: PatchSettings = PatchSettings()
    encoder: EncoderSettings = EncoderSettings()
    sampler: SamplerSettings = SamplerSettings()
    createsim: CreatesimSettings = CreatesimSettings()
    sim: SimSettings = SimSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()

    @model_validator(mode="after")
    def _consistent(self) -> CampaignSpec:
        m, p = self.macro, self.patches
        spacing = m.box_nm / m.grid_points
        if p.native_points > m.grid_points:
            raise SpecConflict(
                "patches.native_points",
                f"patches.native_points ({p.native_points}) exceeds macro.grid_points ({m.grid_points})",
            )
        if not math.isclose(p.native_points * spacing, p.size_nm, rel_tol=0.1):
            raise SpecConflict(
                "patches.size_nm",
                f"patches.native_points x grid spacing = {p.native_points * spacing:.1f} nm does not match "
                f"patches.size_nm = {p.size_nm} nm; keep box_nm/grid_points near {p.size_nm / p.native_points:.3f} nm",
            )
        setup = SETUP_ENGINE[self.sim.engine]
        if self.createsim.engine != setup:
            raise SpecConflict(
                "createsim.engine",
                f"sim.engine {self.sim.engine!r} starts from a {setup!r} setup; set createsim.engine: {setup}",
            )
        if self.campaign.chain and self.resources.backend not in ("slurm", "flux"):
            raise SpecConflict(
                "campaign.chain",
                "chained allocations are batch jobs of Slurm (sbatch) or Flux (flux batch); resources.backend is "
                f"{self.resources.backend!r}: set campaign.chain: 0, or run on Slurm or Flux",
            )
        self._check_jobs_fit_a_node()
        from mummi.core.resources import ResourcePolicy  # it reads this spec; imported here to avoid a cycle

        ResourcePolicy.from_spec(self)
        return self

    def _check_jobs_fit_a_node(self) -> None:
        r = self.resources
        if r.wfm_cores >= r.cores_per_node:
            raise SpecConflict(
                "resources.wfm_cores",
                f"resources.wfm_cores ({r.wfm_cores}) leaves no core of resources.cores_per_node "
                f"({r.cores_per_node}) for jobs; lower it",
            )
        # On one machine the coordinator's cores are not available to jobs.
        cores = r.cores_per_node - (r.wfm_cores if r.backend == "local" else 0)
        for job in ("macro", "createsim", "sim", "analysis"):
            res: JobResources = getattr(self, job).resources
            if res.cores_per_task * res.tasks > cores * res.nodes:
                raise SpecConflict(
                    f"{job}.resources.cores_per_task",
                    f"{job}.resources asks for more cores per node ({res.cores_per_task * res.tasks // res.nodes}) "
                    f"than a node offers to jobs ({cores}: resources.cores_per_node - wfm_cores); "
                    f"lower {job}.resources.cores_per_task or raise resources.cores_per_node",
                )
            if res.gpus_per_task * res.tasks > r.gpus_per_node * res.nodes:
                raise SpecConflict(
                    f"{job}.resources.gpus_per_task",
                    f"{job}.resources asks for more GPUs per node than resources.gpus_per_node ({r.gpus_per_node}); "
                    f"lower {job}.resources.gpus_per_task or raise resources.gpus_per_node",
                )

    def for_dry_run(self) -> CampaignSpec:
        """The same campaign on the local backend with the mock MD engine."""
        return self.model_copy(
            update={
                "campaign": self.campaign.model_copy(update={"chain": 0}),
                "resources": self.resources.model_copy(update={"backend": "local"}),
                "createsim": self.createsim.model_copy(update={"engine": "mock"}),
                "sim": self.sim.model_copy(update={"engine": "mock"}),
            }
        )

    def with_chain(self, chain: int) -> CampaignSpec:
        """The same campaign with ``campaign.chain`` set (validated again: it depends on the backend)."""
        data = self.model_dump()
        data["campaign"]["chain"] = chain
        return CampaignSpec.model_validate(data)

    def to_yaml(self) -> str:
        """The resolved settings, every default filled in, as YAML that loads back to the same spec."""
        text: str = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, default_flow_style=None)
        return text
