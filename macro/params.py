"""The macro model's parameters: one versioned ``.npz`` file (no pickle).

Everything the DDFT membrane and its RAS particles need (seed 000, Methods, "The
macro model": lipid-lipid direct correlation functions, self-diffusion constants,
RAS-lipid potentials of mean force, RAS-RAS potential, RAS diffusion) lives in one
:class:`MacroParameters`. The feedback (issue 6) writes a new version into the
campaign's ``macro/params/`` folder with :func:`write_parameters`; the model picks
up :func:`latest_parameters` at its next reload point and stamps every frame with
the version it used.

Units: nm, ns, kJ/mol; concentrations are areal number densities (lipids per nm²
of one leaflet).

Lipid-lipid interactions
    The direct correlation functions enter the free energy as
    ``½ Σ_ij ∫∫ c_i(x) K_ij(|x-y|) c_j(y)``, with
    ``K_ij(r) = local_ij δ(r) + Σ_b kernel_amplitudes[b, i, j] g_b(r)``: a contact
    (Flory-Huggins-like) matrix plus a few tabulated radial shapes ``g_b``, each
    normalised to ``∫ g_b d²r = 1`` so that amplitudes are integrated strengths
    (kJ/mol·nm²). The matrices are symmetric and, by default, leaflet-blocked (no
    inner-outer coupling). This basis form keeps the interactions general (any
    matrix, any number of shapes) while letting the model apply them through a
    few collective fields (the matrices' eigenvectors) instead of 14² convolutions.

RAS-lipid potentials
    ``pmf_kj_mol[s, i, :]`` tabulates V_i(r) for RAS state ``s`` on ``pmf_r_nm``
    (starting at 0, increasing); V is 0 beyond the last point, so tables should end
    near 0. The feedback replaces this table.

Defaults (:func:`default_parameters`)
    The plasma-membrane mimic of the paper (8 inner, 6 outer lipid types) at 1.6
    lipids/nm² per leaflet; lipid diffusion 1.2-4 µm²/s (0.012-0.04 nm²/ns; PIP2
    slowest, cholesterol fastest); contact repulsion of the total leaflet density
    (near-incompressible leaflets) and of the anionic lipids (screened charge); one
    Gaussian kernel (σ = 1.5 nm) for an attractive "saturation" mode per leaflet
    (sphingomyelin and cholesterol against polyunsaturated lipids) that leaves the
    mixture stable but with enhanced composition fluctuations; RAS-lipid PMFs as
    Gaussian wells/bumps of 0.1-3 kT and 2-2.5 nm width (PIP2 and PS strongly
    attracted, sphingomyelin and cholesterol repelled), different in the two RAS
    states; RAS diffusion 2 µm²/s, a soft 4 nm RAS-RAS repulsion; conserved lipid
    noise coarse-grained over 4 nm at half the thermal amplitude.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mummi.core.atomic import atomic_savez, numbered
from mummi.core.lipids import CHANNEL_NAMES, CHANNELS, N_CHANNELS, leaflet_of
from mummi.core.spec import MacroSettings
from mummi.core.unreadable import reading

log = logging.getLogger(__name__)

FORMAT = "mummi-macro-params/1"
GAS_CONSTANT_KJ_MOL_K = 8.314462618e-3
_VERSION_FILE = re.compile(r"^params-v(\d{4,})\.npz$")


def kt_kj_mol(temperature_K: float) -> float:
    """Thermal energy kT in kJ/mol."""
    return GAS_CONSTANT_KJ_MOL_K * temperature_K


@dataclass(frozen=True)
class MacroParameters:
    """One version of the macro model's parameters (see the module docstring for units)."""

    diffusion_nm2_per_ns: np.ndarray  # (14,)
    mean_concentration_per_nm2: np.ndarray  # (14,)
    local_kernel_kj_mol_nm2: np.ndarray  # (14, 14) contact interactions
    kernel_r_nm: np.ndarray  # (nk,) radii of the tabulated kernel shapes
    kernel_shapes: np.ndarray  # (nb, nk) radial shapes g_b(r), ∫ g_b d²r = 1 (nm⁻²)
    kernel_amplitudes_kj_mol_nm2: np.ndarray  # (nb, 14, 14)
    pmf_r_nm: np.ndarray  # (nr,)
    pmf_kj_mol: np.ndarray  # (n_states, 14, nr) RAS-lipid V_i(r) per RAS state
    ras_diffusion_nm2_per_ns: float
    ras_repulsion_kj_mol: float  # RAS-RAS: eps * (1 - r/size)^2 for r < size
    ras_size_nm: float
    ras_state_rates_per_ns: np.ndarray  # (n_states, n_states) switching rates, diagonal ignored
    noise_length_nm: float = 4.0  # coarse-graining length of the conserved lipid noise
    noise_scale: float = 0.5  # noise amplitude relative to ideal-gas thermal noise at that length
    version: int = 0
    channels: tuple[str, ...] = field(default=CHANNEL_NAMES)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = np.array(value, dtype=np.float64)
                value.setflags(write=False)
                object.__setattr__(self, f.name, value)
        object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        _validate(self)

    @property
    def n_states(self) -> int:
        return self.pmf_kj_mol.shape[0]

    def replace(self, **changes: Any) -> MacroParameters:
        """A copy with some fields changed (e.g. ``pmf_kj_mol=new_table``), validated."""
        return dataclasses.replace(self, **changes)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (no objects), as stored in a parameter file or a checkpoint."""
        out: dict[str, np.ndarray] = {"format": np.array(FORMAT)}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = np.array(list(value)) if f.name == "channels" else np.asarray(value)
        return out

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray] | np.lib.npyio.NpzFile) -> MacroParameters:
        fmt = str(data["format"]) if "format" in data else "?"
        if fmt != FORMAT:
            raise ValueError(f"not a macro parameter set: format {fmt!r}, expected {FORMAT!r}")
        kwargs: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                raise ValueError(f"macro parameters lack {f.name!r}")
            value = np.asarray(data[f.name])
            if f.name == "channels":
                kwargs[f.name] = tuple(str(c) for c in value)
            elif f.name == "version":
                kwargs[f.name] = int(value)
            elif value.ndim == 0:
                kwargs[f.name] = float(value)
            else:
                kwargs[f.name] = value
        return cls(**kwargs)  # type: ignore[arg-type]


def _validate(p: MacroParameters) -> None:
    def bad(msg: str) -> ValueError:
        return ValueError(f"invalid macro parameters: {msg}")

    if p.channels != CHANNEL_NAMES:
        raise bad(f"channels must be {list(CHANNEL_NAMES)}, got {list(p.channels)}")
    n = N_CHANNELS
    shapes = {
        "diffusion_nm2_per_ns": (n,),
        "mean_concentration_per_nm2": (n,),
        "local_kernel_kj_mol_nm2": (n, n),
    }
    for name, shape in shapes.items():
        if getattr(p, name).shape != shape:
            raise bad(f"{name} must have shape {shape}, got {getattr(p, name).shape}")
    if np.any(p.diffusion_nm2_per_ns <= 0) or np.any(p.mean_concentration_per_nm2 <= 0):
        raise bad("diffusion constants and mean concentrations must be positive")
    nb, nk = p.kernel_shapes.shape if p.kernel_shapes.ndim == 2 else (-1, -1)
    if nb < 0 or p.kernel_r_nm.shape != (nk,) or p.kernel_amplitudes_kj_mol_nm2.shape != (nb, n, n):
        raise bad(f"kernel_shapes (nb, nk), kernel_r_nm (nk,) and kernel_amplitudes (nb, {n}, {n}) disagree")
    for name in ("local_kernel_kj_mol_nm2", "kernel_amplitudes_kj_mol_nm2"):
        m = getattr(p, name)
        if not np.allclose(m, np.swapaxes(m, -1, -2)):
            raise bad(f"{name} must be symmetric")
    if p.pmf_kj_mol.ndim != 3 or p.pmf_kj_mol.shape[1:] != (n, p.pmf_r_nm.size) or p.pmf_kj_mol.shape[0] < 1:
        raise bad(f"pmf_kj_mol must have shape (n_states, {n}, {p.pmf_r_nm.size}), got {p.pmf_kj_mol.shape}")
    for name in ("pmf_r_nm", "kernel_r_nm"):
        r = getattr(p, name)
        if r.size and (r[0] != 0 or np.any(np.diff(r) <= 0)):
            raise bad(f"{name} must start at 0 and increase")
    if p.ras_state_rates_per_ns.shape != (p.n_states, p.n_states) or np.any(p.ras_state_rates_per_ns < 0):
        raise bad(f"ras_state_rates_per_ns must be a non-negative ({p.n_states}, {p.n_states}) matrix")
    if p.ras_diffusion_nm2_per_ns < 0 or p.ras_repulsion_kj_mol < 0 or p.ras_size_nm <= 0:
        raise bad("RAS diffusion and repulsion must be >= 0 and ras_size_nm > 0")
    if p.noise_length_nm <= 0 or p.noise_scale < 0:
        raise bad("noise_length_nm must be > 0 and noise_scale >= 0")
    arrays = [getattr(p, f.name) for f in dataclasses.fields(p) if isinstance(getattr(p, f.name), np.ndarray)]
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise bad("all values must be finite")


# ------------------------------------------------------------------- defaults
def gaussian_shape(r_nm: np.ndarray, sigma_nm: float) -> np.ndarray:
    """exp(-r²/2σ²)/(2πσ²): a radial shape with unit integral over the plane."""
    return np.exp(-0.5 * (r_nm / sigma_nm) ** 2) / (2 * np.pi * sigma_nm**2)


def default_parameters(temperature_K: float = 310.0) -> MacroParameters:
    """The built-in parameter set (version 0); see the module docstring for the choices."""
    kt = kt_kj_mol(temperature_K)
    density = 1.6
    fractions = {
        "inner": {
            "POPC": 0.08,
            "PAPC": 0.12,
            "POPE": 0.13,
            "DIPE": 0.17,
            "DPSM": 0.09,
            "PAPS": 0.14,
            "PAP6": 0.06,
            "CHOL": 0.21,
        },
        "outer": {"POPC": 0.25, "PAPC": 0.13, "POPE": 0.06, "DIPE": 0.06, "DPSM": 0.20, "CHOL": 0.30},
    }
    diffusion = {
        "POPC": 0.025,
        "PAPC": 0.025,
        "POPE": 0.025,
        "DIPE": 0.025,
        "DPSM": 0.018,
        "PAPS": 0.022,
        "PAP6": 0.012,
        "CHOL": 0.04,
    }
    saturation = {
        "POPC": 0.3,
        "PAPC": -0.5,
        "POPE": 0.0,
        "DIPE": -0.8,
        "DPSM": 1.0,
        "PAPS": -0.3,
        "PAP6": -0.5,
        "CHOL": 1.0,
    }
    charge = {"PAPS": 1.0, "PAP6": 3.0}
    names = CHANNELS
    mean = np.array([density * fractions[leaf][lip] for leaf, lip in names])
    diff = np.array([diffusion[lip] for _, lip in names])

    same_leaflet = np.array(
        [[leaflet_of(i) == leaflet_of(j) for j in range(N_CHANNELS)] for i in range(N_CHANNELS)], float
    )
    q = np.array([charge.get(lip, 0.0) if leaf == "inner" else 0.0 for leaf, lip in names])
    local = (1.25 * same_leaflet + 0.05 * np.outer(q, q)) * kt  # kT nm² -> kJ/mol nm²
    u = np.array([saturation[lip] for _, lip in names])
    sat = -0.8 * np.outer(u, u) * same_leaflet * kt  # smallest Hessian eigenvalue 0.4 of the ideal 1

    kernel_r = np.arange(0.0, 8.0 + 1e-9, 0.05)
    pmf_r = np.arange(0.0, 10.0 + 1e-9, 0.05)
    wells = (  # (depth in kT per lipid, width nm) for RAS states 0 and 1
        (
            {
                "POPC": 0.3,
                "PAPC": -0.3,
                "POPE": -0.2,
                "DIPE": -0.8,
                "DPSM": 1.5,
                "PAPS": -1.5,
                "PAP6": -3.0,
                "CHOL": 1.0,
            },
            2.0,
        ),
        (
            {
                "POPC": 0.2,
                "PAPC": -0.5,
                "POPE": -0.4,
                "DIPE": -1.2,
                "DPSM": 1.0,
                "PAPS": -2.5,
                "PAP6": -1.5,
                "CHOL": 0.5,
            },
            2.5,
        ),
    )
    outer_scale = 0.25  # the outer leaflet feels RAS only through the bilayer
    pmf = np.array(
        [
            [
                depth[lip] * (1.0 if leaf == "inner" else outer_scale) * kt * np.exp(-0.5 * (pmf_r / width) ** 2)
                for leaf, lip in names
            ]
            for depth, width in wells
        ]
    )
    return MacroParameters(
        diffusion_nm2_per_ns=diff,
        mean_concentration_per_nm2=mean,
        local_kernel_kj_mol_nm2=local,
        kernel_r_nm=kernel_r,
        kernel_shapes=gaussian_shape(kernel_r, 1.5)[None, :],
        kernel_amplitudes_kj_mol_nm2=sat[None],
        pmf_r_nm=pmf_r,
        pmf_kj_mol=pmf,
        ras_diffusion_nm2_per_ns=0.002,
        ras_repulsion_kj_mol=10.0 * kt,
        ras_size_nm=4.0,
        ras_state_rates_per_ns=np.array([[0.0, 5e-4], [1e-3, 0.0]]),
    )


# ------------------------------------------------------------------ files
def save_parameters(path: str | Path, params: MacroParameters) -> Path:
    """Write ``params`` to ``path`` (``.npz``) atomically."""
    return atomic_savez(path, **params.to_arrays())


def load_parameters(path: str | Path) -> MacroParameters:
    with reading(path, "macro parameter file"), np.load(path, allow_pickle=False) as data:
        return MacroParameters.from_arrays(data)


def parameters_path(directory: str | Path, version: int) -> Path:
    return Path(directory) / f"params-v{version:04d}.npz"


def parameter_versions(directory: str | Path) -> list[int]:
    """The versions present in ``directory``, ascending."""
    return numbered(directory, _VERSION_FILE)


def write_parameters(directory: str | Path, params: MacroParameters) -> int:
    """Store ``params`` as the next version in ``directory``; returns that version.

    The version stamped into the file is the assigned one (``params.version`` is
    ignored). One writer per folder (the feedback); readers never see half a file.
    """
    versions = parameter_versions(directory)
    version = (versions[-1] if versions else 0) + 1
    save_parameters(parameters_path(directory, version), params.replace(version=version))
    log.info("macro parameters version %d written to %s", version, directory)
    return version


def spec_parameters(settings: MacroSettings) -> MacroParameters:
    """The parameters a campaign starts from: ``macro.parameters`` when given, else the defaults."""
    if settings.parameters is not None:
        return load_parameters(settings.parameters)
    return default_parameters(settings.temperature_K)


def latest_parameters(directory: str | Path) -> MacroParameters | None:
    """The newest version in ``directory``, or None when there is none."""
    versions = parameter_versions(directory)
    return load_parameters(parameters_path(directory, versions[-1])) if versions else None


def describe(params: MacroParameters) -> str:
    """A short JSON summary for logs."""
    return json.dumps(
        {"version": params.version, "n_states": params.n_states, "n_kernels": int(params.kernel_shapes.shape[0])}
    )
