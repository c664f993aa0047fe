"""mummi-report: the campaign as one HTML page, from a dry run and from a simulated replay, checked against the store.

One small dry run (the finished dry run the campaign tests share) and one small
simulated replay (in this process) serve every test of the module; a real
browser (Debian's headless Chromium) renders the page once.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from html.parser import HTMLParser
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import require_program
from matplotlib.image import imread

from mummi.analysis.coverage import Box, density_2d, divergences, kl_divergence
from mummi.core.exit_codes import EXIT_OK, EXIT_RESUMABLE, EXIT_USAGE
from mummi.workflow.cli import run_main, status_main
from mummi.workflow.report import build, main
from mummi.workflow.report_data import CampaignClock
from mummi.workflow.report_page import SECTIONS
from mummi.workflow.store import StateStore

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPLAY_HOURS = 48.0


def simulated_spec(folder: Path) -> Path:
    """Two virtual days on 4 nodes, in 24-hour allocations, with failed jobs, lost nodes and feedback rounds."""
    data = {
        "campaign": {
            "name": "replay",
            "workdir": "run",
            "seed": 5,
            "stop": {"max_sims": None, "wall_time_h": REPLAY_HOURS},
        },
        "resources": {
            "backend": "simulated",
            "nodes": 4,
            "cores_per_node": 16,
            "gpus_per_node": 4,
            "simulated": {
                "createsim": {"mean_min": 90.0},
                "patches": {"per_frame": 20, "total": 4000},
                "allocation_min": 1440.0,
                "fail_rate": 0.1,
                "node_mtbf_h": 48.0,
            },
        },
        "macro": {"resources": {"cores_per_task": 4, "walltime_min": 30 * 1440}},
        "sampler": {"warmup": 10, "checkpoint_interval_s": 3600},
        "createsim": {"engine": "mock", "buffer": 4, "resources": {"cores_per_task": 4, "walltime_min": 120}},
        "sim": {"engine": "mock", "length_ns": 510.0, "resources": {"gpus_per_task": 1, "walltime_min": 1440}},
        "analysis": {"resources": {"cores_per_task": 2, "walltime_min": 2 * 1440}},
        "feedback": {"interval_sims": 10, "min_sims": 5, "start_h": 12.0, "damping": 0.5},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "replay.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory: pytest.TempPathFactory, finished_dry_run: tuple[Path, int, str]) -> dict[str, Path]:
    """The workdirs of a finished dry run (the one the campaign tests share) and a finished simulated replay, each
    with its report built."""
    dry, code, out = finished_dry_run
    assert code == EXIT_OK, out[-3000:]
    replay = simulated_spec(tmp_path_factory.mktemp("replay"))
    codes = [run_main([str(replay)])]
    while codes[-1] == EXIT_RESUMABLE and len(codes) < 10:
        codes.append(run_main([str(replay)]))
    assert codes[-1] == EXIT_OK and len(codes) >= 2, codes
    workdirs = {"dry run": dry / "run", "replay": replay.parent / "run"}
    assert status_main([str(workdirs["dry run"]), "--report"]) == EXIT_OK  # the shortcut
    assert main([str(workdirs["replay"]), "--out", str(workdirs["replay"] / "report")]) == EXIT_OK
    return workdirs


@pytest.fixture(params=["dry run", "replay"])
def campaign(request: pytest.FixtureRequest, campaigns: dict[str, Path]) -> Path:
    return campaigns[request.param]


class Page(HTMLParser):
    """The ids, images, links and table rows of a report page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self.images: list[str] = []
        self.links: list[str] = []
        self.rows: dict[str, int] = {}
        self._open_id: str | None = None
        self._table: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"] or "")
        if tag == "a" and not (a.get("href") or "#").startswith("#"):
            self.links.append(a["href"] or "")
        if tag == "table":
            self._table = a.get("id")
            self.rows[self._table or ""] = 0
        if tag == "tr" and self._table:
            self.rows[self._table] += 1
        if a.get("id"):
            self._open_id = a["id"]
            self.ids[a["id"] or ""] = ""

    def handle_data(self, data: str) -> None:
        if self._open_id is not None:
            self.ids[self._open_id] += data

    def handle_endtag(self, tag: str) -> None:
        self._open_id = None
        if tag == "table":
            self._table = None


def number(text: str) -> float:
    return float(text.replace(",", ""))


def page_of(workdir: Path) -> Page:
    return Page((workdir / "report" / "index.html").read_text())


def test_every_section_is_there_and_every_figure_a_readable_image(campaign: Path) -> None:
    page = page_of(campaign)
    assert set(SECTIONS) <= set(page.ids)
    assert len(page.images) == 7, page.images  # history, densities, parallel coordinates, feedback, 3 of resources
    for src in page.images:
        path = campaign / "report" / src
        assert path.read_bytes()[:8] == PNG_SIGNATURE, src
        pixels = imread(path)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and float(pixels[..., :3].std()) > 0.02, src
    for href in page.links:  # relative links into the folder, each there
        assert "/" not in href and (campaign / "report" / href).is_file(), href
    assert any(link.endswith(".csv") for link in page.links)


def test_the_page_shows_the_stores_numbers(campaign: Path) -> None:
    page = page_of(campaign)
    con = sqlite3.connect(campaign / "campaign.db")

    def count(sql: str) -> int:
        return int(con.execute(sql).fetchone()[0])

    expected = {
        "patches-evaluated": count("SELECT COUNT(*) FROM patches"),
        "patches-selected": count("SELECT COUNT(*) FROM patches WHERE state = 'selected'"),
        "sims-done": count("SELECT COUNT(*) FROM selections WHERE state = 'done'"),
        "sims-failed": count("SELECT COUNT(*) FROM selections WHERE state = 'failed'"),
        "sims-unfinished": count("SELECT COUNT(*) FROM selections WHERE state NOT IN ('done', 'failed')"),
        "feedback-rounds": count("SELECT COUNT(*) FROM feedback_rounds WHERE finished_at IS NOT NULL"),
        "runs": int(json.loads(con.execute("SELECT value FROM meta WHERE key = 'runs'").fetchone()[0])),
        "failed-jobs": count(
            "SELECT COUNT(*) FROM jobs WHERE (state = 'failed' AND COALESCE(exit_code, -1) != 75)"
            " OR id IN (SELECT CAST(subject AS INTEGER)"
            " FROM events WHERE kind = 'job.state' AND json_extract(data, '$.to') = 'failed'"
            " AND COALESCE(json_extract(data, '$.exit_code'), -1) != 75)"
        ),
    }
    shown = {key: number(page.ids[key]) for key in expected}
    assert shown == expected
    assert expected["feedback-rounds"] >= 1 and page.rows["feedback-table"] == expected["feedback-rounds"] + 1
    assert page.rows["runs-table"] == expected["runs"] + 1
    if expected["failed-jobs"]:
        assert page.rows["failures-table"] == expected["failed-jobs"] + 1
    selections = (campaign / "report" / "selection-history.csv").read_text().splitlines()
    assert len(selections) == count("SELECT COUNT(*) FROM selections") + 1
    evaluated = (campaign / "report" / "evaluated.csv").read_text().splitlines()
    assert int(evaluated[-1].split(",")[1]) == expected["patches-evaluated"]
    distance = con.execute(
        "SELECT distance FROM feedback_rounds WHERE finished_at IS NOT NULL ORDER BY round DESC LIMIT 1"
    ).fetchone()[0]
    assert number(page.ids["distance-last"]) == pytest.approx(distance, rel=1e-3)
    con.close()


def test_the_replay_is_shown_on_its_virtual_clock_with_its_allocations_and_failures(campaigns: dict[str, Path]):
    workdir = campaigns["replay"]
    page = page_of(workdir)
    assert number(page.ids["campaign-hours"]) == pytest.approx(REPLAY_HOURS, abs=1.0)  # not the minutes it took
    runs = (workdir / "report" / "runs.csv").read_text()
    n_runs = int(number(page.ids["runs"]))
    assert n_runs >= 2 and runs.count("allocation ending") == n_runs - 1 and f"wall time {REPLAY_HOURS} h used" in runs
    assert number(page.ids["failed-jobs"]) > 0
    failures = (workdir / "report" / "failures.csv").read_text()
    assert "simulated failure" in failures and "/sims/sim-" in failures  # reasons and log paths
    gpu_hours = (workdir / "report" / "gpu-hours.csv").read_text().splitlines()[1:]
    total = sum(float(line.split(",")[1]) for line in gpu_hours)
    assert total == pytest.approx(16 * number(page.ids["campaign-hours"]), rel=0.01)  # every GPU-hour accounted for


def test_a_real_browser_renders_the_page_without_errors(campaigns: dict[str, Path], tmp_path: Path) -> None:
    chromium = require_program(
        "chromium", "the page is rendered by Debian's headless Chromium (apt-get install chromium)"
    )
    page = (campaigns["dry run"] / "report" / "index.html").resolve()
    shot = tmp_path / "page.png"
    common = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--hide-scrollbars",
    ]
    done = subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), done.stderr[-3000:]
    assert not re.findall(r"CONSOLE.*", done.stderr), "the page logged to the console"
    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    assert float(pixels[..., :3].std()) > 0.05, "the screenshot is blank"
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert all(f'id="{key}"' in dom.stdout for key in SECTIONS), dom.stdout[:2000]


def test_the_report_needs_a_campaign(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == EXIT_USAGE
    assert "no campaign database" in capsys.readouterr().err


def test_a_campaign_that_has_not_started_yet_gives_a_page_with_nothing_to_show(tmp_path: Path) -> None:
    StateStore(tmp_path / "campaign.db").close()
    built = build(tmp_path)
    page = Page(built.index.read_text())
    assert set(SECTIONS) <= set(page.ids) and number(page.ids["patches-evaluated"]) == 0
    assert "No sampler checkpoint" in built.index.read_text()


def test_the_console_script_is_installed() -> None:
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("mummi-report") == "mummi.workflow.report:main"


# ------------------------------------------------------------------ the numbers
def test_kl_divergence_of_a_distribution_from_itself_is_zero_and_grows_with_the_difference() -> None:
    p = np.array([0.5, 0.25, 0.25, 0.0])
    assert kl_divergence(p, p) == 0.0
    assert kl_divergence(p, np.full(4, 0.25)) == pytest.approx(np.log(4) - 1.5 * np.log(2))
    assert kl_divergence(np.array([0.0, 1.0]), np.array([1.0, 0.0])) == np.inf


def test_a_spread_selection_is_flatter_and_its_weights_recover_the_true_density() -> None:
    rng = np.random.default_rng(0)
    everything = rng.normal(size=(20000, 2))
    random = everything[rng.choice(len(everything), 400, replace=False)]
    grid = np.stack(np.meshgrid(np.linspace(-3, 3, 20), np.linspace(-3, 3, 20)), -1).reshape(-1, 2)
    spread = np.unique(everything[((everything[None] - grid[:, None]) ** 2).sum(-1).argmin(1)], axis=0)  # patches
    nearest = ((everything[:, None] - spread[None]) ** 2).sum(-1).argmin(1)
    weights = np.bincount(nearest, minlength=len(spread)).astype(float)
    box = Box.around(everything)
    densities = {
        name: density_2d(x, (0, 1), box, 10, w)
        for name, x, w in (
            ("all", everything, None),
            ("random", random, None),
            ("dynim", spread, None),
            ("weighted", spread, weights),
        )
    }
    kl = divergences(densities)
    assert kl["DynIm vs uniform"] < kl["random vs uniform"]
    assert kl["weighted DynIm vs all"] < 0.2 and kl["random vs all"] < 0.2


def test_the_campaign_clock_follows_its_anchors() -> None:
    wall = CampaignClock(100.0)
    assert wall.hours(3700.0) == pytest.approx(1.0) and not wall.virtual
    virtual = CampaignClock.matched(100.0, np.array([100.0, 110.0, 120.0]), np.array([0.0, 3600.0, 7200.0]))
    assert virtual.hours([105.0, 120.0]) == pytest.approx([0.5, 2.0]) and virtual.virtual
