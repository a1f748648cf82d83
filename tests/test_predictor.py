"""Accuracy predictor: MIT's encoding and weights reproduced, training learns a known target, files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_edge.accuracy.predictor import (
    WEIGHT_DECAY,
    AccuracyPredictor,
    ArchEncoder,
    fit_predictor,
    load_predictor,
    save_predictor,
)
from ofa_edge.errors import CheckpointError
from ofa_edge.supernet.space import ArchConfig, SearchSpace
from ofa_edge.testing.mit_reference import import_mit
from tests.test_cli import error_line

RESOLUTIONS = [160, 176, 192, 208, 224]
SPACE = SearchSpace()


def _archs(n: int, seed: int, resolutions: list[int] = RESOLUTIONS) -> list[ArchConfig]:
    rng = random.Random(seed)
    return [
        ArchConfig(a.ks, a.e, a.d, rng.choice(resolutions)) for a in (SPACE.sample(rng) for _ in range(n))
    ]


def _mit_dict(a: ArchConfig) -> dict:
    return {"ks": list(a.ks), "e": [int(v) for v in a.e], "d": list(a.d), "image_size": a.r}


def test_mit_state_dict_loads_and_predicts_identically(tmp_path: Path) -> None:
    mit = import_mit("ofa.nas.accuracy_predictor")
    encoder = mit.MobileNetArchEncoder(
        image_size_list=RESOLUTIONS, ks_list=[3, 5, 7], expand_list=[3, 4, 6], depth_list=[2, 3, 4], n_stage=5
    )
    torch.manual_seed(1)
    theirs = mit.AccuracyPredictor(encoder, hidden_size=400, n_layers=3, device="cpu")
    theirs.base_acc.data.fill_(0.71)
    torch.save(theirs.state_dict(), tmp_path / "mit_predictor.pth")

    ours = AccuracyPredictor(ArchEncoder.for_space(SPACE, RESOLUTIONS))
    ours.load_state_dict(torch.load(tmp_path / "mit_predictor.pth"))
    archs = _archs(64, seed=0)
    expected_x = np.array([encoder.arch2feature(_mit_dict(a)) for a in archs])
    assert np.array_equal(ours.encoder.encode(archs), expected_x.astype(np.float32))
    with torch.no_grad():
        expected = theirs.predict_acc([_mit_dict(a) for a in archs]).numpy()
    got = ours.predict(archs)
    assert np.allclose(got, expected, rtol=0, atol=1e-6)
    assert np.std(got) > 1e-4  # the comparison is not between constants

    # The bare file also loads through load_predictor, given a space with the same resolutions.
    loaded = load_predictor(tmp_path / "mit_predictor.pth", SearchSpace(resolutions=tuple(RESOLUTIONS)))
    assert np.allclose(loaded.predictor.predict(archs), expected, rtol=0, atol=1e-6)
    with pytest.raises(CheckpointError, match="encodes 5 resolutions; the space has 25"):
        load_predictor(tmp_path / "mit_predictor.pth", SPACE)


def test_fit_learns_a_known_function_of_the_encoding() -> None:
    enc = ArchEncoder.for_space(SPACE, RESOLUTIONS)
    w_true = np.random.default_rng(0).normal(0.0, 1.0, enc.n_dim).astype(np.float32)
    archs = _archs(600, seed=1)
    target = enc.encode(archs) @ w_true + 70.0
    fit = fit_predictor(archs, target, enc, hidden_size=128, epochs=60, batch_size=64, seed=0)
    assert fit.n_train == 480 and fit.n_val == 120
    assert fit.spearman > 0.95
    assert fit.rmse < 0.25 * float(np.std(target))
    untrained = AccuracyPredictor(enc, hidden_size=128)
    untrained.base_acc.fill_(float(target.mean()))
    baseline = float(np.sqrt(np.mean((untrained.predict(archs) - target) ** 2)))
    assert fit.rmse < 0.5 * baseline


def test_fit_does_not_learn_a_tables_label_noise() -> None:
    """A table measured on a few thousand images carries sampling noise on every top-1. The fit's
    weight decay keeps the MLP from memorizing it: held-out error nearer the noise than without."""
    enc = ArchEncoder.for_space(SPACE, RESOLUTIONS)
    rng = np.random.default_rng(0)
    archs = _archs(1000, seed=2)
    signal = enc.encode(archs) @ rng.normal(0.0, 1.0, enc.n_dim)
    signal = 0.8 + 0.014 * (signal - signal.mean()) / signal.std()  # fractions, as real tables
    noisy = signal + rng.normal(0.0, 0.0057, len(archs))  # binomial noise of 5,000 images at 80 %
    plain = fit_predictor(archs, noisy, enc, epochs=100, weight_decay=0.0)
    decayed = fit_predictor(archs, noisy, enc, epochs=100)  # the default: WEIGHT_DECAY
    assert WEIGHT_DECAY > 0 and decayed.predictor.frozen()(enc.encode(archs)).std() > 0.5 * signal.std()
    assert decayed.rmse < 0.92 * plain.rmse and decayed.spearman > plain.spearman + 0.02


def test_save_load_round_trip_and_bad_files(tmp_path: Path) -> None:
    enc = ArchEncoder.for_space(SPACE, RESOLUTIONS)
    torch.manual_seed(0)
    model = AccuracyPredictor(enc, hidden_size=32, n_layers=2)
    path = save_predictor(model, tmp_path / "p.pt", "ofa_mbv3_d234_e346_k357_w1.0", {"rmse": 0.5})
    loaded = load_predictor(path)
    archs = _archs(10, seed=2)
    assert np.array_equal(loaded.predictor.predict(archs), model.predict(archs))
    assert loaded.supernet == "ofa_mbv3_d234_e346_k357_w1.0" and loaded.metrics == {"rmse": 0.5}
    assert loaded.predictor.encoder == enc and loaded.predictor.n_layers == 2
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read predictor"):
        load_predictor(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_predictor(tmp_path / "missing.pt")


def test_fit_cli_trains_saves_and_plots(tmp_path: Path) -> None:
    """``accuracy fit`` on a table whose top-1 is a known function of the encoding."""
    import json
    import subprocess
    import sys

    from ofa_edge.accuracy.table import SCHEMA, SCHEMA_VERSION, sample_arch
    from ofa_edge.supernet.registry import get_supernet_info

    space = get_supernet_info("ofa-mbv3-cifar10").spec.space
    enc = ArchEncoder.for_space(space)
    archs = [sample_arch(space, 0, i) for i in range(300)]
    w_true = np.random.default_rng(0).normal(0.0, 1.0, enc.n_dim)
    top1 = enc.encode(archs) @ w_true + 70.0
    header = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "supernet": "ofa-mbv3-cifar10"}
    lines = [json.dumps(header)] + [
        json.dumps({"index": i, "arch": a.to_dict(), "top1": float(t), "seconds": 1.0})
        for i, (a, t) in enumerate(zip(archs, top1))
    ]
    table = tmp_path / "acc.jsonl"
    table.write_text("\n".join(lines) + "\n")
    out, plot = tmp_path / "pred.pt", tmp_path / "fit.png"
    cmd = [sys.executable, "-m", "ofa_edge.cli.main", "--json", "accuracy", "fit", str(table)]
    res = subprocess.run(
        [*cmd, "--out", str(out), "--plot", str(plot), "--epochs", "60"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["n_train"] == 240 and doc["n_val"] == 60 and doc["spearman"] > 0.9
    assert plot.stat().st_size > 10_000
    loaded = load_predictor(out)
    assert loaded.supernet == "ofa-mbv3-cifar10" and loaded.metrics["spearman"] == doc["spearman"]
    got = loaded.predictor.predict(archs[:20])
    assert np.allclose(got, top1[:20] / 100, atol=0.1 * np.std(top1) / 100 + 0.01)  # fractions, as MIT's

    table.write_text("not a table\n")
    res = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert "is not an ofa-edge accuracy table" in error_line(res, 2)
