"""The VAE patch encoder (seed 000, Methods, "Encoding of macro configurations")."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mummi.core.spec import EncoderSettings, EncoderTrainingSettings
from mummi.jobs import train as train_job
from mummi.sampler import train as train_mod
from mummi.sampler.encoder import MANIFEST, REPORT, WEIGHTS, Encoder, resolve_device
from mummi.sampler.patchdata import ChannelRange, synthetic_coarse_patches, with_rotations

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def settings(**training: object) -> EncoderSettings:
    return EncoderSettings(device="cpu", training=EncoderTrainingSettings(**training))


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return synthetic_coarse_patches(400, seed=1)


@pytest.fixture(scope="module")
def trained(data: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> tuple[Encoder, Path]:
    out = tmp_path_factory.mktemp("encoder")
    return train_mod.train_encoder(data, settings(epochs=30, batch_size=32, patience=8), out, seed=0), out


def test_vae_reconstructs_far_better_than_the_mean_predictor(trained: tuple[Encoder, Path]) -> None:
    encoder, out = trained
    report = json.loads((out / REPORT).read_text())
    assert report["train_patches"] == 360 and report["validation_patches"] == 40
    assert report["train_samples"] == 4 * 360  # rotations quadruple the training data
    assert 1 <= report["best_epoch"] <= report["epochs_run"] <= 30
    assert len(report["history"]["val_mse"]) == report["epochs_run"]
    assert report["val_loss"] == min(report["history"]["val_loss"])  # the best epoch's weights are kept
    assert report["val_mse"] < 0.5 * report["trivial_val_mse"], report["history"]["val_mse"]
    assert encoder.latent_dim == 15


def test_save_load_round_trip_gives_identical_latents(trained: tuple[Encoder, Path], data: np.ndarray) -> None:
    encoder, out = trained
    assert Encoder.exists(out)
    loaded = Encoder.load(out)
    z = encoder.encode(data)
    assert z.dtype == np.float32 and z.shape == (len(data), 15)
    np.testing.assert_array_equal(loaded.encode(data), z)
    np.testing.assert_array_equal(loaded.scaling.low, encoder.scaling.low)
    assert loaded.arch == encoder.arch
    assert loaded.report is not None and encoder.report is not None
    assert loaded.report["epochs_run"] == encoder.report["epochs_run"]


def test_encode_is_deterministic_float32_and_batch_independent(trained: tuple[Encoder, Path], data: np.ndarray) -> None:
    encoder, out = trained
    z1, z2 = encoder.encode(data), encoder.encode(data)
    np.testing.assert_array_equal(z1, z2)
    small = Encoder.load(out, batch_size=7)
    np.testing.assert_allclose(small.encode(data), z1, rtol=1e-5, atol=1e-5)
    assert encoder.encode(data[:1]).dtype == np.float32
    assert encoder.encode(data.astype(np.float64)).dtype == np.float32
    with pytest.raises(ValueError, match=r"shape \(n, 5, 5, 14\)"):
        encoder.encode(data[:, :4])
    recon = encoder.reconstruct(data[:5])
    assert recon.shape == (5, 5, 5, 14) and recon.dtype == np.float32


def test_exists_needs_the_manifest_written_last(trained: tuple[Encoder, Path], tmp_path: Path) -> None:
    encoder, _ = trained
    assert not Encoder.exists(tmp_path / "missing") and not Encoder.exists(tmp_path)
    encoder.save(tmp_path / "m")
    assert Encoder.exists(tmp_path / "m")
    (tmp_path / "m" / MANIFEST).unlink()  # weights without manifest: a half-written model
    assert not Encoder.exists(tmp_path / "m")
    with pytest.raises(ValueError, match="no complete encoder"):
        Encoder.load(tmp_path / "m")
    encoder.save(tmp_path / "t")
    (tmp_path / "t" / WEIGHTS).write_bytes((tmp_path / "t" / WEIGHTS).read_bytes()[:-10])  # truncated weights
    assert not Encoder.exists(tmp_path / "t")
    with pytest.raises(ValueError, match="SHA-256"):
        Encoder.load(tmp_path / "t")


class _Payload:
    """Unpickling this creates a directory: the sign that arbitrary code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def test_loading_never_unpickles_a_tampered_weights_file(trained: tuple[Encoder, Path], tmp_path: Path) -> None:
    encoder, _ = trained
    out = encoder.save(tmp_path / "m")
    marker = tmp_path / "pwned"
    state = dict(torch.load(out / WEIGHTS, weights_only=True))
    state["payload"] = _Payload(marker)  # type: ignore[assignment]
    torch.save(state, out / WEIGHTS)
    manifest = json.loads((out / MANIFEST).read_text())  # a tamperer can fix the checksum too
    manifest["weights"].update(
        bytes=(out / WEIGHTS).stat().st_size, sha256=hashlib.sha256((out / WEIGHTS).read_bytes()).hexdigest()
    )
    (out / MANIFEST).write_text(json.dumps(manifest))
    assert Encoder.exists(out)
    with pytest.raises(ValueError, match="refused"):
        Encoder.load(out)
    assert not marker.exists()
    # the payload is live: a pickle-trusting load would have run it
    torch.load(out / WEIGHTS, weights_only=False)
    assert marker.is_dir()


def test_rotations_quadruple_the_data_and_turn_the_grid() -> None:
    x = np.arange(2 * 5 * 5 * 14, dtype=np.float32).reshape(2, 5, 5, 14)
    r = with_rotations(x)
    assert r.shape == (8, 5, 5, 14) and r.dtype == np.float32
    r0, r90, r180, r270 = r[:2], r[2:4], r[4:6], r[6:]
    np.testing.assert_array_equal(r0, x)
    for i in range(5):
        for j in range(5):
            np.testing.assert_array_equal(r90[:, i, j], x[:, j, 4 - i])  # counter-clockwise quarter turn
            np.testing.assert_array_equal(r180[:, i, j], x[:, 4 - i, 4 - j])
            np.testing.assert_array_equal(r270[:, i, j], x[:, 4 - j, i])
    # channels are never mixed and every rotation keeps a channel's values
    np.testing.assert_array_equal(np.sort(r270[..., 3], axis=None), np.sort(x[..., 3], axis=None))


def test_channel_range_maps_each_channel_onto_unit_interval() -> None:
    x = synthetic_coarse_patches(50, seed=3)
    x[..., 5] = 2.5  # a constant channel
    scaling = ChannelRange.fit(x)
    y = scaling.apply(x)
    np.testing.assert_allclose(y.reshape(-1, 14).min(axis=0)[:5], 0.0, atol=1e-6)
    np.testing.assert_allclose(y.reshape(-1, 14).max(axis=0)[:5], 1.0, atol=1e-6)
    assert np.all(y[..., 5] == 0.0) and scaling.span[5] == 1.0
    np.testing.assert_allclose(scaling.invert(y), x, rtol=1e-5, atol=1e-5)


def test_training_is_deterministic_on_cpu_and_rotations_can_be_off(tmp_path: Path) -> None:
    x = synthetic_coarse_patches(60, seed=2)
    s = settings(epochs=2, batch_size=16, augment_rotations=False)
    a = train_mod.train_encoder(x, s, None, seed=5)
    b = train_mod.train_encoder(x, s, None, seed=5)
    np.testing.assert_array_equal(a.encode(x), b.encode(x))
    assert a.report["train_samples"] == a.report["train_patches"] == 54
    c = train_mod.train_encoder(x, s, None, seed=6)
    assert not np.array_equal(a.encode(x), c.encode(x))


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="at least 3 patches"):
        train_mod.train_encoder(synthetic_coarse_patches(2), settings(), None, seed=0)
    with pytest.raises(ValueError, match="'metric'"):
        train_mod.train_encoder(synthetic_coarse_patches(10), EncoderSettings(kind="metric"), None, seed=0)


def test_cli_trains_from_macro_patch_files_and_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "campaign: {name: t, workdir: W}\nencoder:\n  device: cpu\n  training: {epochs: 3, batch_size: 32}\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    macro = [
        sys.executable,
        "-m",
        "mummi.jobs.macro",
        "--spec",
        str(spec),
        "--workdir",
        str(tmp_path / "W"),
        "--until-ns",
        "1000",
        "--uncoupled",
    ]
    subprocess.run(macro, check=True, env=env, capture_output=True, timeout=120)
    patches = sorted((tmp_path / "W" / "patches").glob("patches-*.h5"))
    assert len(patches) >= 3
    out = tmp_path / "enc"
    job = [
        sys.executable,
        "-m",
        "mummi.jobs.train",
        "--spec",
        str(spec),
        "--out",
        str(out),
        "--seed",
        "3",
        *map(str, patches),
    ]
    done = subprocess.run(job, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Encoder.exists(out)
    report = json.loads((out / REPORT).read_text())
    assert report["seed"] == 3 and report["epochs_run"] <= 3 and report["patches"] >= 3 * 4
    encoder = Encoder.load(out)
    from mummi.macro.patches import read_patches

    z = encoder.encode(read_patches(patches[0], native=False).coarse)
    assert z.shape[1] == 15 and np.isfinite(z).all()

    # rerun: the model is there, so nothing is trained and nothing is rewritten
    def no_training(*args: object, **kwargs: object) -> Encoder:
        raise AssertionError("retrained a finished model")

    monkeypatch.setattr(train_job, "train_encoder", no_training)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert train_job.main(["--spec", str(spec), "--out", str(out), str(tmp_path / "W" / "patches")]) == 0
    assert before == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


def test_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("campaign: {name: t, workdir: W}\n")
    (tmp_path / "empty").mkdir()
    out = str(tmp_path / "enc")
    assert train_job.main(["--spec", str(spec), "--out", out, str(tmp_path / "empty")]) == 2
    assert "no patch files" in capsys.readouterr().err
    assert train_job.main(["--spec", str(spec), "--out", out]) == 2
    assert train_job.main(["--spec", str(spec), "--out", out, str(tmp_path / "nope.h5")]) == 2
    assert "no such patch file" in capsys.readouterr().err
    assert train_job.main(["--spec", str(tmp_path / "missing.yaml"), "--out", out, str(tmp_path / "empty")]) == 2
    (tmp_path / "bad.h5").write_text("not hdf5")
    assert train_job.main(["--spec", str(spec), "--out", out, str(tmp_path / "bad.h5")]) == 2
    assert "cannot read patches" in capsys.readouterr().err
    assert not Encoder.exists(out)


def test_cli_reads_patch_files_written_by_write_patches(tmp_path: Path) -> None:
    from mummi.macro.patches import PatchSet, write_patches

    coarse = synthetic_coarse_patches(12, seed=4)
    for t in (0.0, 100.0):
        n = len(coarse)
        ps = PatchSet(ids=[f"p{i}" for i in range(n)], time_ns=t, param_version=1, spacing_nm=0.8,
                      ras_ids=np.arange(n), centres_nm=np.zeros((n, 2)), central_states=np.zeros(n, np.int64),
                      native=np.zeros((n, 0, 0, 14), np.float32), coarse=coarse,
                      constellation_start=np.zeros(n + 1, np.int64), constellation_offsets_nm=np.zeros((0, 2)),
                      constellation_states=np.zeros(0, np.int64),
                      constellation_ras_ids=np.zeros(0, np.int64))  # fmt: skip
        write_patches(tmp_path / "p", ps, native=False)
    read, files = train_job.read_coarse([tmp_path / "p"])
    assert len(files) == 2 and read.shape == (24, 5, 5, 14)
    np.testing.assert_array_equal(read[12:], coarse)


def test_benchmark_returns_figures_without_printing(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from mummi.sampler import bench_encoder

    parser = argparse.ArgumentParser()
    bench_encoder.add_arguments(parser)
    result = bench_encoder.run(parser.parse_args(["--patches", "200", "--epochs", "1", "--threads", "1"]))
    assert result["cpu"]["train_samples_per_epoch"] == 4 * 180 and result["cpu"]["encode_patches_per_s"] > 0
    assert result["cpu"]["train_s_per_epoch"] > 0
    if not torch.cuda.is_available():
        assert result["gpu"].startswith("unmeasured")
    assert capsys.readouterr().out == ""
