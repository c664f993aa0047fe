"""The learned patch metric of seed 002: transformations, Υ, losses, evaluation, training, saving, the CLI, DynIm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mummi.core.spec import (
    EncoderSettings,
    EncoderTrainingSettings,
    MacroSettings,
    MetricSettings,
    PatchSettings,
    SamplerSettings,
)
from mummi.jobs import train as train_job
from mummi.macro.frames import Frame, write_frame
from mummi.macro.model import MacroModel
from mummi.macro.params import default_parameters
from mummi.macro.patches import extract_patches, write_patches
from mummi.sampler import metric_eval as ev
from mummi.sampler.dynim import DynimSampler
from mummi.sampler.encoder import MANIFEST, REPORT, Encoder, load_encoder, saved_kind, saved_latent_dim
from mummi.sampler.metric import (
    TRANSFORMS,
    MetricArchitecture,
    MetricEncoder,
    PatchMetricNet,
    invariance_loss,
    label_loss,
    radial_loss,
    radial_profiles,
    transform,
    with_transforms,
)
from mummi.sampler.metric_data import CONTROL, constellation_class, control_points, labelled_frames, patch_labels
from mummi.sampler.metric_train import train_metric

P = 37


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def settings(**training: object) -> EncoderSettings:
    return EncoderSettings(kind="metric", device="cpu", training=EncoderTrainingSettings(**training))


def macro_frames(seed: int, count: int, burn_steps: int = 0) -> list[Frame]:
    """Frames of a small macro model (50 nm box, 6 RAS), one every 200 ns: room for 37-point (30 nm) patches."""
    s = MacroSettings(box_nm=50.0, grid_points=60, n_ras=6)
    model = MacroModel(default_parameters(s.temperature_K), s, seed=seed, compute="numpy")
    return model.frames(count, every_steps=10, burn_steps=burn_steps)


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return macro_frames(seed=3, count=24)


@pytest.fixture(scope="module")
def data(frames: list[Frame]) -> tuple[np.ndarray, np.ndarray]:
    labelled = labelled_frames(frames, PatchSettings(), control_fraction=0.25, seed=0)
    return labelled.native, labelled.labels


@pytest.fixture(scope="module")
def heldout() -> tuple[np.ndarray, np.ndarray]:
    labelled = labelled_frames(macro_frames(seed=4, count=8, burn_steps=50), PatchSettings(), 0.25, seed=1)
    return labelled.native, labelled.labels


@pytest.fixture(scope="module")
def trained(
    data: tuple[np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> tuple[MetricEncoder, Path]:
    out = tmp_path_factory.mktemp("metric")
    return train_metric(*data, settings(epochs=20, batch_size=32, patience=20), out, seed=0), out


# ------------------------------------------------------------------------------ transformations and Υ
def test_transformations_turn_and_mirror_the_grid_in_numpy_and_torch() -> None:
    x = np.random.default_rng(0).random((2, 5, 5, 3)).astype(np.float32)
    r90, flip_h, flip_v = transform(x, "rot90"), transform(x, "flip_h"), transform(x, "flip_v")
    for i in range(5):
        for j in range(5):
            np.testing.assert_array_equal(r90[:, i, j], x[:, j, 4 - i])  # counter-clockwise, as the VAE's rotations
            np.testing.assert_array_equal(flip_h[:, i, j], x[:, i, 4 - j])
            np.testing.assert_array_equal(flip_v[:, i, j], x[:, 4 - i, j])
    np.testing.assert_array_equal(transform(transform(x, "rot90"), "rot270"), x)
    blocks = with_transforms(torch.from_numpy(x)).numpy().reshape(6, 2, 5, 5, 3)
    np.testing.assert_array_equal(blocks[0], x)
    for k, name in enumerate(TRANSFORMS, start=1):
        np.testing.assert_array_equal(blocks[k], transform(x, name))
    with pytest.raises(ValueError, match="'rot45'"):
        transform(x, "rot45")


def test_radial_profile_of_known_radial_images() -> None:
    iy, ix = np.meshgrid(np.arange(P), np.arange(P), indexing="ij")
    centre = np.rint(np.hypot(iy - 18, ix - 18))
    corner = np.rint(np.min([np.hypot(iy - cy, ix - cx) for cy in (0, 36) for cx in (0, 36)], axis=0))
    x = np.zeros((1, P, P, 3), np.float32)
    x[0, :, :, 0] = centre
    x[0, :, :, 1] = corner
    x[0, :, :, 2] = 5.0
    u = radial_profiles(x, [0, 1, 2]).reshape(3, 38)
    assert radial_profiles(x).shape == (1, 3 * 38) and radial_profiles(x, [0, 2]).shape == (1, 2 * 38)
    np.testing.assert_array_equal(u[0, :19], np.arange(19))  # max over the ring of radius r around the centre is r
    np.testing.assert_array_equal(u[1, 19:], np.arange(19))  # each corner's ring r, within its quadrant, holds r
    np.testing.assert_array_equal(u[2], 5.0)
    np.testing.assert_array_equal(radial_profiles(x, [2, 0]).reshape(2, 38)[1], u[0])  # channel order kept
    noise = np.random.default_rng(1).normal(size=(3, P, P, 4)).astype(np.float32)
    for name in TRANSFORMS:  # Υ is invariant to the transformations by construction
        np.testing.assert_allclose(radial_profiles(transform(noise, name)), radial_profiles(noise), rtol=1e-6)


# ------------------------------------------------------------------------------ losses
def test_invariance_loss_is_zero_when_transforms_coincide_and_patches_are_apart() -> None:
    centres = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 2.5]])
    z = centres.repeat(6, 1)  # 6 copies of 3 patches, copy after copy
    assert float(invariance_loss(z, 6, margin=1.0)) == pytest.approx(0.0, abs=1e-5)
    assert float(invariance_loss(z, 6, margin=3.0)) > 0  # 2.5 apart: within a margin of 3
    # two patches, two copies each: a0 (0, 0), b0 (1, 0), a1 (0.5, 0), b1 (1, 0)
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [1.0, 0.0]])
    # anchors: a0 1 + 0.5 - 1 = 0.5; b0 1 + 0 - 0.5 = 0.5; a1 1 + 0.5 - 0.5 = 1; b1 0.5
    assert float(invariance_loss(z, 2, margin=1.0)) == pytest.approx(0.625, abs=1e-5)


def test_radial_loss_vanishes_for_a_proportional_embedding() -> None:
    u = torch.randn(10, 30, generator=torch.Generator().manual_seed(0))
    z = 0.1 * u
    assert float(radial_loss(z, u, 0.1)) == pytest.approx(0.0, abs=1e-4)
    d = torch.cdist(u, u)[tuple(torch.triu_indices(10, 10, 1))]
    assert float(radial_loss(2 * z, u, 0.1)) == pytest.approx(float(0.1 * d.mean()), rel=1e-4)


def test_label_loss_separates_classes_by_the_margin() -> None:
    z = torch.tensor([[0.0], [0.5], [9.0], [9.5]])
    labels = torch.tensor([1, 1, 2, 2])
    assert float(label_loss(z, labels, margin=8.0)) == pytest.approx(0.0, abs=1e-5)
    # margin 9: anchor 0.0: 9 + 0.5 - 9 = 0.5; 0.5: 9 + 0.5 - 8.5 = 1; 9.0: 1; 9.5: 0.5
    assert float(label_loss(z, labels, margin=9.0)) == pytest.approx(0.75, abs=1e-5)
    assert float(label_loss(z, torch.tensor([1, 1, 1, 1]), margin=9.0)) == 0.0  # no negatives: nothing to separate


# ------------------------------------------------------------------------------ evaluation
def test_overlap_mare_and_auc_on_hand_made_distances() -> None:
    assert ev.overlap_percent(np.array([1.0, 2.0, 3.0, 4.0]), reach=2.0) == 50.0
    assert ev.mare(np.array([1.0, 2.0, 3.0]), np.array([10.0, 10.0, 10.0]), 0.1) == pytest.approx(1.0)
    assert ev.fitted_lambda(np.array([1.0, 2.0]), np.array([10.0, 20.0])) == pytest.approx(0.1)
    labels = np.array([0, 0, 1, 1])
    points = np.array([[0.0], [1.0], [10.0], [11.0]])  # each patch's nearest neighbour is in its class
    assert ev.pr_auc(ev.pairwise(points), labels) == pytest.approx(1.0)
    swapped = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # ... and here its class comes last
    assert ev.pr_auc(ev.pairwise(swapped), labels) == pytest.approx(1 / 6)
    assert ev.chance_auc(labels) == pytest.approx(1 / 3)
    x = np.random.default_rng(2).normal(size=(6, P, P, 2)).astype(np.float32)
    u = ev.upper(ev.pairwise(radial_profiles(x)))
    on_u = ev.evaluate_space(radial_profiles, x, np.arange(6) % 2, u, lambda_rad=1.0)
    assert on_u["overlap_percent"] == 0.0 and on_u["mare"] == pytest.approx(0.0, abs=1e-5) and on_u["dim"] == 76
    on_images = ev.evaluate_space(lambda a: a.reshape(len(a), -1), x, np.arange(6) % 2, u, 1.0)
    assert on_images["overlap_percent"] == 100.0  # a rotated noise image is as far as any other


# ------------------------------------------------------------------------------ data
def test_classes_come_from_the_constellation_and_control_patches_hold_no_ras(frames: list[Frame]) -> None:
    assert constellation_class(0, 0) == CONTROL
    np.testing.assert_array_equal(constellation_class(np.array([1, 2, 3, 7, 1, 2]), np.array([0, 0, 0, 0, 1, 1])),
                                  [1, 2, 3, 3, 4, 5])  # fmt: skip
    patches = extract_patches(frames[0])
    labels = patch_labels(patches)
    for p in range(len(patches)):
        others, _ = patches.constellation(p)
        assert labels[p] == constellation_class(1 + len(others), int(patches.central_states[p]))
    frame = frames[0]
    reach = P * frame.spacing_nm / 2
    points = control_points(frame, 30, reach, np.random.default_rng(0))
    assert len(points) == 30 and len(np.unique(points, axis=0)) == 30  # distinct: no patch twice
    d = points[:, None] - frame.ras_positions_nm[None]
    d -= frame.box_nm * np.round(d / frame.box_nm)
    assert not (np.abs(d) <= reach).all(axis=2).any()


# ------------------------------------------------------------------------------ network, training, saving
def test_network_maps_native_patches_to_9d_and_fuses_the_separable_convolution() -> None:
    arch = MetricArchitecture()
    assert arch.feature_side() == 8
    net = PatchMetricNet(arch).eval()
    x = torch.randn(4, P, P, 14, generator=torch.Generator().manual_seed(0))
    assert net(x).shape == (4, 9)
    fused = (x @ net.mixing().T + net.pointwise.bias).permute(0, 3, 1, 2)
    torch.testing.assert_close(fused, net.separable(x), rtol=1e-5, atol=1e-5)
    assert MetricArchitecture.from_json(json.loads(json.dumps(arch.to_json()))) == arch
    with pytest.raises(ValueError, match="too small"):
        MetricArchitecture(grid=5).feature_side()


def test_spec_defaults_for_the_metric() -> None:
    assert EncoderSettings(kind="metric").latent_dim == 9 and EncoderSettings().latent_dim == 15
    assert EncoderSettings(kind="metric", latent_dim=4).latent_dim == 4
    m = MetricSettings()
    assert (m.w_inv, m.alpha_inv, m.w_rad, m.lambda_rad, m.w_lab, m.alpha_lab) == (2, 1, 2, 0.1, 1, 8)
    assert m.profile_channels == list(range(8))
    with pytest.raises(ValueError, match="at least one"):
        MetricSettings(w_inv=0, w_rad=0, w_lab=0)
    with pytest.raises(ValueError, match="repeated"):
        MetricSettings(profile_channels=[1, 1])
    with pytest.raises(ValueError):
        MetricSettings(profile_channels=[14])


def test_trained_metric_beats_an_untrained_one_and_round_trips(
    trained: tuple[MetricEncoder, Path], heldout: tuple[np.ndarray, np.ndarray]
) -> None:
    encoder, out = trained
    report = json.loads((out / REPORT).read_text())
    assert report["kind"] == "metric" and report["classes"]["0"] > 0 and report["epochs_run"] <= 20
    assert report["val_loss"] == min(report["history"]["val_loss"])
    x, labels = heldout
    u = ev.upper(ev.pairwise(radial_profiles(encoder.scaling.apply(x), list(range(8)))))
    torch.manual_seed(0)
    untrained = MetricEncoder(PatchMetricNet(encoder.arch), encoder.scaling)
    before = ev.evaluate_space(untrained.encode, x, labels, u, 0.1)
    after = ev.evaluate_space(encoder.encode, x, labels, u, 0.1)
    assert after["overlap_percent"] < before["overlap_percent"], (before, after)
    assert after["mare"] < before["mare"], (before, after)

    assert Encoder.exists(out) and saved_kind(out) == "metric" and saved_latent_dim(out) == 9
    loaded = load_encoder(out)
    assert isinstance(loaded, MetricEncoder) and loaded.needs_native and loaded.arch == encoder.arch
    z = encoder.encode(x)
    assert z.dtype == np.float32 and z.shape == (len(x), 9)
    with torch.no_grad():  # the standardisation folded into the first layer changes nothing
        reference = encoder.model(torch.from_numpy(encoder.normalise(x))).numpy()
    np.testing.assert_allclose(z, reference, rtol=1e-4, atol=1e-5)
    bad = x[:2].copy()
    bad[1, 3, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        encoder.encode(bad)
    np.testing.assert_array_equal(loaded.encode(x), z)
    np.testing.assert_allclose(MetricEncoder.load(out, batch_size=5).encode(x), z, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not a 'vae'"):
        Encoder.load(out)
    with pytest.raises(ValueError, match=r"native patches must have shape \(n, 37, 37, 14\)"):
        encoder.encode(x[:, :5, :5])
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["weights"]["sha256"] = "0" * 64
    (out.parent / "tampered").mkdir(exist_ok=True)
    for f in out.iterdir():
        (out.parent / "tampered" / f.name).write_bytes(f.read_bytes())
    (out.parent / "tampered" / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="SHA-256"):
        load_encoder(out.parent / "tampered")


def test_training_is_deterministic_on_cpu(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, labels = data[0][:40], data[1][:40]
    s = settings(epochs=1, batch_size=16)
    a, b = train_metric(x, labels, s, None, seed=2), train_metric(x, labels, s, None, seed=2)
    np.testing.assert_array_equal(a.encode(x), b.encode(x))
    with pytest.raises(ValueError, match="one label per patch"):
        train_metric(x, labels[:3], s, None, seed=0)


def dynim_picks(encoder: MetricEncoder, x: np.ndarray, n: int) -> list[int]:
    """The patches (indices into ``x``) of DynIm's first ``n`` picks among ``x`` and all its transformations."""
    copies = [x] + [np.ascontiguousarray(transform(x, name)) for name in TRANSFORMS]
    z = np.concatenate([encoder.encode(c) for c in copies])
    orbit = np.tile(np.arange(len(x)), len(copies))
    sampler = DynimSampler(z.shape[1], SamplerSettings(k=1, warmup=0), seed=0)
    sampler.add_candidates([str(k) for k in range(len(orbit))], z)
    return [int(orbit[int(p.id)]) for p in sampler.select(n)]


def test_transformations_get_near_coordinates_and_dynim_picks_no_transformed_copy(
    trained: tuple[MetricEncoder, Path], heldout: tuple[np.ndarray, np.ndarray]
) -> None:
    encoder, _ = trained
    x = heldout[0]
    z = encoder.encode(x)
    reach = np.max(  # each patch's farthest transformation
        [np.linalg.norm(encoder.encode(np.ascontiguousarray(transform(x, name))) - z, axis=1) for name in TRANSFORMS],
        axis=0,
    )
    pairs = ev.upper(ev.pairwise(z))
    assert np.median(reach) < 0.5 * np.median(pairs), (np.median(reach), np.median(pairs))
    picked = dynim_picks(encoder, x, 20)  # the most novel 20 are 20 different patches, never a transformed copy
    assert len(set(picked)) == len(picked), picked
    torch.manual_seed(0)
    untrained = dynim_picks(MetricEncoder(PatchMetricNet(encoder.arch), encoder.scaling), x, 20)
    assert len(set(untrained)) < len(untrained)  # without training, DynIm soon picks a copy as novel


# ------------------------------------------------------------------------------ the job
def test_cli_trains_the_metric_with_control_patches_and_is_idempotent(
    frames: list[Frame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "campaign: {name: t, workdir: W}\nencoder:\n  device: cpu\n  training: {epochs: 1, batch_size: 32}\n"
    )
    (tmp_path / "frames").mkdir()
    (tmp_path / "patches").mkdir()
    for frame in frames[:6]:
        write_frame(tmp_path / "frames", frame)
        write_patches(tmp_path / "patches", extract_patches(frame))
    out = tmp_path / "enc"
    argv = ["--spec", str(spec), "--out", str(out), "--kind", "metric", "--seed", "1"]
    assert train_job.main([*argv, "--frames", str(tmp_path / "frames"), str(tmp_path / "patches")]) == 0
    assert saved_kind(out) == "metric" and saved_latent_dim(out) == 9  # the spec's VAE size gives way to the metric's
    report = json.loads((out / REPORT).read_text())
    assert report["seed"] == 1 and report["classes"]["0"] > 0 and report["patches"] > 6 * 6
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert train_job.main([*argv, str(tmp_path / "patches")]) == 0  # already there: nothing retrained
    assert before == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert train_job.main(["--spec", str(spec), "--out", str(out), str(tmp_path / "patches")]) == 2  # a VAE asked for
    assert "already holds a 'metric' encoder" in capsys.readouterr().err
    coarse_only = tmp_path / "coarse"
    coarse_only.mkdir()
    write_patches(coarse_only, extract_patches(frames[0]), native=False)
    argv = ["--spec", str(spec), "--out", str(tmp_path / "e2"), "--kind", "metric", str(coarse_only)]
    assert train_job.main(argv) == 2
    assert "no native patches" in capsys.readouterr().err


def test_benchmark_returns_the_table_without_printing(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from mummi.sampler import bench_metric

    parser = argparse.ArgumentParser()
    bench_metric.add_arguments(parser)
    args = ["--grid", "60", "--ras", "4", "--train-frames", "4", "--heldout-frames", "3", "--burn-in-ns", "0",
            "--epochs", "1", "--vae-epochs", "1", "--macro-steps", "0", "--inference-patches", "64"]  # fmt: skip
    result = bench_metric.run(parser.parse_args(args))
    assert set(result["table"]) == {"metric", "no_inv", "vae", "l2_images", "l2_mean", "l2_upsilon"}
    assert result["table"]["l2_upsilon"]["overlap_percent"] == 0.0 and result["table"]["metric"]["dim"] == 9
    assert result["speed"]["inference_patches_per_s"] > 0 and result["training"]["metric"]["s_per_epoch"] > 0
    assert set(result["targets"]) >= {"overlap_below_0.5_percent", "mare_below_no_inv", "auc_above_vae"}
    assert capsys.readouterr().out == ""
