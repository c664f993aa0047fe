"""The state store: schema versions, legal transitions, one transaction each, readers beside writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from mummi.core.states import JobState, PatchState, SimState
from mummi.workflow.store import SCHEMA_VERSION, StateStore, StoreError, count_by_state


@pytest.fixture
def store(tmp_path):
    with StateStore(tmp_path / "campaign.db") as s:
        yield s


def test_new_store_is_wal_and_at_the_current_schema(store):
    assert store.schema_version == SCHEMA_VERSION
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [e.kind for e in store.events()] == ["store.migrated"] * SCHEMA_VERSION


def test_reopening_does_not_migrate_again(tmp_path):
    StateStore(tmp_path / "c.db").close()
    with StateStore(tmp_path / "c.db") as again:
        assert len(again.events("store.migrated")) == SCHEMA_VERSION


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "c.db"
    StateStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this mummi knows"):
        StateStore(path)


def test_migrations_run_in_order_from_any_version(tmp_path, monkeypatch):
    import mummi.workflow.store as store_module

    path = tmp_path / "c.db"
    StateStore(path).close()
    extra = store_module.MIGRATIONS + ("ALTER TABLE jobs ADD COLUMN node TEXT",)
    monkeypatch.setattr(store_module, "MIGRATIONS", extra)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(extra))
    with StateStore(path) as s:
        assert s.schema_version == len(extra)
        assert "node" in [r[1] for r in s._db.execute("PRAGMA table_info(jobs)")]


def test_job_lifecycle_and_retry_counts_attempts(store):
    job = store.add_job("sim", ["python", "-m", "mummi.jobs.sim"], {"gpus_per_task": 1}, subject="sim-0001")
    store.set_job_state(job, JobState.SUBMITTED, backend_id="1234")
    store.set_job_state(job, JobState.RUNNING)
    failed = store.set_job_state(job, JobState.FAILED, exit_code=137, reason="killed")
    assert failed.exit_code == 137 and failed.backend_id == "1234"
    retried = store.set_job_state(job, JobState.PENDING)
    assert retried.attempt == 2
    assert [j.id for j in store.jobs(states=[JobState.PENDING], kind="sim")] == [job]
    moves = [(e.subject, e.kind) for e in store.events("job.state")]
    assert moves == [(str(job), "job.state")] * 4


def test_illegal_job_transition_is_refused_and_changes_nothing(store):
    job = store.add_job("createsim", ["true"], {})
    store.set_job_state(job, JobState.SUBMITTED)
    store.set_job_state(job, JobState.DONE)
    before = len(store.events())
    with pytest.raises(StoreError, match="cannot go from done to running; allowed: none"):
        store.set_job_state(job, JobState.RUNNING)
    assert store.job(job).state is JobState.DONE
    assert len(store.events()) == before


def test_patches_are_idempotent_and_selection_is_recorded_once(store):
    rows = [(f"f000000000200-r{i:04d}", 200.0, i, "patches/f200.h5") for i in range(3)]
    assert store.add_patches(rows) == 3
    assert store.add_patches(rows) == 0
    store.set_patch_states([rows[0][0], rows[1][0]], PatchState.CANDIDATE)
    sel = store.record_selection(rows[0][0], "sim-000001", 0.7)
    assert sel.state is SimState.SELECTED and sel.seq == 1
    with pytest.raises(StoreError, match="cannot go from selected to selected"):
        store.record_selection(rows[0][0], "sim-000002", 0.6)
    with pytest.raises(StoreError, match="already taken"):
        store.record_selection(rows[1][0], "sim-000001", 0.5)
    assert store.patch_counts() == {"seen": 1, "candidate": 1, "selected": 1, "discarded": 0}
    assert [s.sim_id for s in store.selections()] == ["sim-000001"]


def test_a_failed_transaction_leaves_no_trace(store):
    store.add_patches([("p1", 0.0, 0, "f.h5")])
    assert store.sim_counts()["selected"] == 0  # counted, then kept as selections change
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.record_selection("p1", "sim-1", 1.0)
            raise RuntimeError("crash between two writes")
    assert store.selections() == []
    assert store.patch_counts()["seen"] == 1
    assert store.events("selection") == []
    assert store.sim_counts()["selected"] == 0


def test_sim_states_follow_the_micro_pipeline(store):
    store.add_patches([("p1", 0.0, 0, "f.h5")])
    store.record_selection("p1", "sim-1", None)
    for state in (SimState.SETTING_UP, SimState.READY, SimState.RUNNING, SimState.DONE):
        store.set_sim_state("sim-1", state)
        assert store.sim_counts() == count_by_state(store._db, "selections", SimState)  # kept = counted
    with pytest.raises(StoreError):
        store.set_sim_state("sim-1", SimState.RUNNING)
    assert store.sim_counts()["done"] == 1 and sum(store.sim_counts().values()) == 1


def test_feedback_rounds_open_and_close(store):
    r1 = store.start_feedback_round(n_sims=8)
    with pytest.raises(StoreError, match="still open"):
        store.start_feedback_round(n_sims=9)
    store.finish_feedback_round(r1, parameter_version=1, distance=0.3, lipids=14)
    with pytest.raises(StoreError, match="not open"):
        store.finish_feedback_round(r1, parameter_version=2, distance=0.2)
    assert store.start_feedback_round(n_sims=16) == 2
    assert [r.round for r in store.feedback_rounds()] == [1, 2]


def test_a_reader_in_another_process_sees_committed_state_while_a_writer_holds_the_store(store):
    store.add_patches([("p1", 0.0, 0, "f.h5")])
    code = (
        "import sys; from mummi.workflow.store import StateStore;"
        "db = StateStore.open_readonly(sys.argv[1]);"
        "print(db.execute('SELECT COUNT(*) FROM patches').fetchone()[0])"
    )
    with store.transaction():
        store._db.execute("INSERT INTO patches VALUES ('p2', 0, 1, 'f.h5', 'seen', 0)")
        out = subprocess.run([sys.executable, "-c", code, str(store.path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_readonly_open_of_a_missing_database(tmp_path):
    with pytest.raises(StoreError, match="no campaign database"):
        StateStore.open_readonly(tmp_path / "campaign.db")


def test_requeue_counts_failures_apart_from_attempts(store):
    job = store.add_job("sim", ["true"], {})
    store.set_job_state(job, JobState.SUBMITTED)
    store.set_job_state(job, JobState.FAILED, exit_code=75)
    again = store.requeue_job(job, failed=False)
    assert (again.attempt, again.failures, again.state) == (2, 0, JobState.PENDING)
    store.set_job_state(job, JobState.SUBMITTED)
    store.set_job_state(job, JobState.FAILED, exit_code=1)
    again = store.requeue_job(job, failed=True)
    assert (again.attempt, again.failures) == (3, 1)


def test_an_old_database_is_migrated_in_place(tmp_path):
    path = tmp_path / "c.db"
    db = sqlite3.connect(path)
    import mummi.workflow.store as store_module

    db.executescript(store_module.MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.execute(
        "INSERT INTO jobs (kind, state, command, resources, created_at, "
        "updated_at) VALUES ('sim', 'done', '[]', '{}', 0, 0)"
    )
    db.commit()
    db.close()
    with StateStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.job(1).failures == 0 and s.job(1).state is JobState.DONE


def test_a_round_cut_short_by_a_restart_is_abandoned_and_its_number_reused(tmp_path):
    with StateStore(tmp_path / "c.db") as store:
        assert store.abandon_open_feedback_round() is None
        first = store.start_feedback_round(n_sims=4)
        store.finish_feedback_round(first, parameter_version=2, distance=0.5)
        cut = store.start_feedback_round(n_sims=8)
        with pytest.raises(StoreError, match="still open"):
            store.start_feedback_round(n_sims=9)
        assert store.abandon_open_feedback_round() == cut
        assert store.start_feedback_round(n_sims=9) == cut
        assert [r.round for r in store.feedback_rounds()] == [first, cut]
        assert [e.subject for e in store.events("feedback.abandoned")] == [str(cut)]


def test_a_file_or_database_that_is_not_a_campaigns_is_refused_untouched(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not sqlite at all\n" * 100)
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE results (x)")
    con.commit()
    con.close()
    for path, why in ((garbage, "not a campaign database"), (foreign, "not a campaign's")):
        before = path.read_bytes()
        with pytest.raises(StoreError, match=why):
            StateStore(path)
        assert path.read_bytes() == before
