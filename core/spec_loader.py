"""Loading a campaign spec file: YAML to :class:`~mummi.core.spec.CampaignSpec`, every problem as one readable error.

``load_spec`` turns every problem into a :class:`SpecError` whose message names
the file, the line, the key path, what was wrong and what is allowed. Relative
paths inside a spec (``workdir``, ``macro.parameters``, ...) are resolved against
the directory the spec file lives in, so a spec means the same thing from
whatever directory ``mummi-run`` is started.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from mummi.core.spec import CampaignSpec, Settings, SpecConflict


class SpecError(Exception):
    """A campaign spec that cannot be used; the message says where and how to fix it."""


_PATH_FIELDS = (
    ("campaign", "workdir"),
    ("macro", "parameters"),
    ("encoder", "model"),
    ("sim", "gromacs", "forcefield"),
    ("sim", "mock", "truth"),
    ("createsim", "protein", "gro"),
    ("createsim", "protein", "itp"),
)
#: Force fields shipped with mummi, which a spec may name instead of giving a folder.
SHIPPED_FORCEFIELDS = Path(__file__).resolve().parent.parent / "adapters" / "forcefield"
#: Path settings that must name an existing file, or folder (True), when set.
_MUST_EXIST: dict[tuple[str, ...], bool] = {
    ("macro", "parameters"): False,
    ("encoder", "model"): True,
    ("sim", "mock", "truth"): False,
    ("sim", "gromacs", "forcefield"): True,
    ("createsim", "protein", "gro"): False,
    ("createsim", "protein", "itp"): False,
}


def load_spec(path: str | Path) -> CampaignSpec:
    """Read and validate a campaign spec file.

    Raises
    ------
    SpecError
        For a missing, unreadable, empty or malformed file and for every invalid
        setting; all invalid settings are reported at once.
    """
    path = Path(path)
    text = _read(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise SpecError(f"{where}: not valid YAML: {problem}. Fix the syntax at that position.") from err
    _refuse_duplicate_keys(path, root)
    if data is None:
        raise SpecError(
            f"{path}: the file is empty; a spec needs at least a 'campaign' section with 'name' and 'workdir'."
        )
    if not isinstance(data, dict):
        raise SpecError(
            f"{path}:1: the top level must be a mapping of sections "
            f"(campaign, resources, macro, ...), got {type(data).__name__}."
        )
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_describe(path, root, err)) from err
    spec = _resolve_paths(spec, path)
    _check_paths_exist(spec, path, root)
    return spec


def _refuse_duplicate_keys(path: Path, node: yaml.Node | None) -> None:
    """YAML lets a repeated key silently replace the first; a spec that repeats one is refused."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value in seen:
                raise SpecError(f"{path}:{key.start_mark.line + 1}: the key '{key.value}' appears twice in one "
                                "mapping; keep one (YAML would silently use the last)")  # fmt: skip
            seen.add(str(key.value))
            _refuse_duplicate_keys(path, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(path, item)


def _read(path: Path) -> str:
    if not path.exists():
        raise SpecError(f"{path}: no such file. Give the path of a campaign YAML file, e.g. specs/laptop.yaml.")
    if path.is_dir():
        raise SpecError(f"{path}: is a directory. Give the path of a campaign YAML file inside it.")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"{path}: cannot be read ({err}).") from err


def _describe(path: Path, root: yaml.Node | None, err: ValidationError) -> str:
    lines = [f"{path}: invalid campaign spec ({err.error_count()} problem{'s' * (err.error_count() > 1)}):"]
    for e in err.errors():
        conflict = e.get("ctx", {}).get("error")
        loc = tuple(conflict.key.split(".")) if isinstance(conflict, SpecConflict) else e["loc"]
        key = ".".join(str(part) for part in loc) or "(top level)"
        line = _line_of(root, loc)
        where = f"{path}:{line}" if line else str(path)
        lines.append(f"  {where}: {key}: {_explain(e)}")
    return "\n".join(lines)


def _explain(e: ErrorDetails) -> str:
    kind, msg = e["type"], str(e["msg"])
    if kind == "extra_forbidden":
        return (
            "unknown key; check its spelling against the documented keys of this section "
            "(mummi-run SPEC --validate prints them all)"
        )
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    got = e.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    return f"{msg} (got {shown})"


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node along ``loc`` that exists in the file."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    line, node = int(key_node.start_mark.line) + 1, value_node
                    break
            else:
                return line or (int(node.start_mark.line) + 1)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = int(node.start_mark.line) + 1
        else:
            break
    return line


def _resolve_paths(spec: CampaignSpec, spec_file: Path) -> CampaignSpec:
    """Expand ``~`` and ``$VARS`` in path settings and anchor relative ones at the spec's folder."""
    base = spec_file.resolve().parent
    for field_path in _PATH_FIELDS:
        value = _get(spec, field_path)
        if value is None:
            continue
        shipped = SHIPPED_FORCEFIELDS / str(value)
        if field_path == ("sim", "gromacs", "forcefield") and (shipped / "build.json").is_file():
            spec = _replace(spec, field_path, shipped)
            continue
        expanded = Path(os.path.expandvars(os.path.expanduser(str(value))))
        if "$" in str(expanded):
            raise SpecError(
                f"{spec_file}: {'.'.join(field_path)}: '{value}' names an environment variable that is not set; "
                "set it or write the path out"
            )
        spec = _replace(spec, field_path, (base / expanded).resolve())
    return spec


def _check_paths_exist(spec: CampaignSpec, spec_file: Path, root: yaml.Node | None) -> None:
    workdir = spec.campaign.workdir
    existing = next((p for p in (workdir, *workdir.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        line = _line_of(root, ("campaign", "workdir"))
        raise SpecError(f"{spec_file}:{line}: campaign.workdir: {existing} is a file; give a folder (made if missing)")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        line = _line_of(root, ("campaign", "workdir"))
        raise SpecError(
            f"{spec_file}:{line}: campaign.workdir: cannot write in {existing}; give a folder you may write"
        )
    for field_path, folder in _MUST_EXIST.items():
        if field_path == ("sim", "gromacs", "forcefield") and spec.createsim.engine != "gromacs":
            continue  # read only by the GROMACS setup
        value = _get(spec, field_path)
        if value is None:
            continue
        found = value.is_dir() if folder else value.is_file()
        if not found:
            line = _line_of(root, field_path)
            where = f"{spec_file}:{line}" if line else str(spec_file)
            raise SpecError(
                f"{where}: {'.'.join(field_path)}: no such {'folder' if folder else 'file'} {value}; "
                "give an existing path (relative paths are relative to the spec file) or remove the key"
            )


def _get(spec: CampaignSpec, field_path: tuple[str, ...]) -> Any:
    """The setting at ``field_path``, or None where it or a section above it is unset."""
    value: Any = spec
    for name in field_path:
        value = getattr(value, name)
        if value is None:
            return None
    return value


def _replace(model: Settings, field_path: tuple[str, ...], value: Any) -> Any:
    head, *rest = field_path
    new = value if not rest else _replace(getattr(model, head), tuple(rest), value)
    return model.model_copy(update={head: new})


def default_spec_path() -> Path:
    """The embedded laptop campaign (``specs/`` sits beside ``core/`` in the repo and in installs)."""
    return Path(__file__).resolve().parent.parent / "specs" / "laptop.yaml"
