"""Runs over seeds: one group run (kind ``seeds``) with one training run per seed under it; the
group's mean ± std are numpy's over the seeds' recorded histories; each seed's run is the plain
run of that seed, bit for bit; the report draws the bands; groups compare as mean ± std."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import skier
from skier.config import RunConfig, load_config
from skier.config.search import TuneConfig, parse_space
from skier.errors import ConfigError
from skier.record import RunStore, default_store_url
from skier.report import compare_runs, load_view, render_comparison_report
from skier.runner import run_seeds, run_training
from skier.runner.seeds import SeedsOutcome, seed_config
from skier.train import Checkpoint, load_checkpoint

SEEDS = [0, 1, 2]


def _config(**extra: object) -> RunConfig:
    overrides = {
        "data.name": "synthetic", "data.samples": 240, "data.features": 6, "data.classes": 3,
        "model.hidden_sizes": [8], "train.epochs": 3, "train.batch_size": 32,
        "optim.name": "sgd", "optim.lr": 0.1, **extra,
    }  # fmt: skip
    return load_config(None, [f"{k}={v}" for k, v in overrides.items()])


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> SeedsOutcome:
    root = tmp_path_factory.mktemp("seeds")
    return run_seeds(_config(), SEEDS, out_dir=root, progress=False)


def _children(group: SeedsOutcome) -> list[Any]:
    with RunStore(group.store_url) as store:
        return store.list_runs(limit=100, parent_id=group.run_id)


def test_the_group_is_a_parent_run_with_one_training_run_per_seed(group: SeedsOutcome) -> None:
    assert group.status == "completed" and group.summary["seeds"] == SEEDS
    with RunStore(group.store_url) as store:
        parent = store.get_run(group.run_id)
        assert parent.kind == "seeds" and parent.status == "completed"
        assert parent.config["seeds"] == SEEDS
        children = store.list_runs(limit=100, parent_id=group.run_id)
        assert sorted(c.kind for c in children) == ["seed"] * 3
        assert sorted(c.config["train"]["seed"] for c in children) == SEEDS
        histories = [store.metrics(c.id).column("val_loss") for c in children]
    # the seeds' runs differ: another initialization and shuffle each
    assert len({tuple(h) for h in histories}) == 3
    for name in ("seed_bands.png", "seed_bands.csv", "seeds.csv", "metrics.csv", "report.html"):
        assert (group.run_dir / name).is_file(), name
    assert all(Path(o.run_dir).parent == group.run_dir / "seeds" for o in group.runs)


def test_mean_and_std_are_numpys_over_the_childrens_recorded_histories(
    group: SeedsOutcome,
) -> None:
    with RunStore(group.store_url) as store:
        children = store.list_runs(limit=100, parent_id=group.run_id)
        recorded = {c.config["train"]["seed"]: store.metrics(c.id) for c in children}
        group_history = store.metrics(group.run_id)
    checked = 0
    for key in ("loss", "val_loss", "val_accuracy", "error"):
        values = np.array([recorded[s].column(key) for s in SEEDS])  # seeds x epochs
        band = group.bands.bands[key]
        assert band.epochs == [1, 2, 3] and band.count == [3, 3, 3]
        np.testing.assert_allclose(band.mean, values.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(band.std, values.std(axis=0, ddof=1), rtol=1e-12)
        # the group's own store metrics are the mean curves
        np.testing.assert_allclose(group_history.column(key), values.mean(axis=0), rtol=1e-12)
        checked += 1
    assert checked == 4
    # the final values: each seed's at its best epoch, then numpy's mean and std over the seeds
    at_best = []
    for outcome in group.runs:
        best = outcome.result.best_epoch
        row = next(r for r in outcome.result.history.rows if r["epoch"] == best)
        at_best.append(row["val_loss"])
    final = group.summary["final"]["val_loss"]
    assert final["mean"] == pytest.approx(np.mean(at_best), rel=1e-12)
    assert final["std"] == pytest.approx(np.std(at_best, ddof=1), rel=1e-12)


def test_each_seed_equals_a_plain_run_with_that_seed(group: SeedsOutcome, tmp_path: Path) -> None:
    seed = 1
    child = group.runs[SEEDS.index(seed)]
    plain = run_training(seed_config(_config(), seed), out_dir=tmp_path, progress=False)
    keys = [k for k in plain.result.history.keys if k != "epoch_time"]
    assert keys and keys == [k for k in child.result.history.keys if k != "epoch_time"]
    for a, b in zip(plain.result.history.rows, child.result.history.rows, strict=True):
        assert [a[k] for k in keys] == [b[k] for k in keys]  # bit-identical on CPU
    assert plain.result.test_metrics == child.result.test_metrics
    mine = load_checkpoint(Path(plain.run_dir) / "checkpoints" / Checkpoint.LAST_FILE)["model"]
    theirs = load_checkpoint(Path(child.run_dir) / "checkpoints" / Checkpoint.LAST_FILE)["model"]
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_the_report_draws_the_bands(group: SeedsOutcome) -> None:
    page = (group.run_dir / "report.html").read_text()
    titles = re.findall(r'<section id="s\d+"><h2>([^<]*)</h2>', page)
    assert "Runs over seeds" in titles
    section = page.split("<h2>Runs over seeds</h2>", 1)[1].split("</section>", 1)[0]
    assert "Every metric as mean ± std over the seeds" in section
    assert 'src="data:image/png;base64,' in section and "mean ± std" in section
    # a seed's run says which group it belongs to
    with RunStore(group.store_url) as store:
        from skier.report import render_run_report

        child_page = render_run_report(load_view(group.runs[0].run_id, store=store))
    assert f"one seed of the group {group.run_id}" in child_page


def test_the_band_figure_fills_mean_plus_minus_std(group: SeedsOutcome) -> None:
    from matplotlib.collections import PolyCollection

    figure = group.plot(["val_loss"])
    (ax,) = figure.axes
    (poly,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    band = group.bands.bands["val_loss"]
    top = np.array(band.mean) + np.array(band.std)
    bottom = np.array(band.mean) - np.array(band.std)
    ys = poly.get_paths()[0].vertices[:, 1]
    assert np.isclose(ys.max(), top.max()) and np.isclose(ys.min(), bottom.min())


@pytest.mark.slow
def test_groups_compare_as_mean_and_std(group: SeedsOutcome, tmp_path: Path) -> None:
    other = run_seeds(_config(**{"optim.lr": 0.02}), [0, 1], out_dir=group.run_dir.parent,
                      progress=False)  # fmt: skip
    with RunStore(group.store_url) as store:
        found = compare_runs([group.run_id, other.run_id], store=store, metric="val_loss")
        views = [load_view(r, store=store) for r in (group.run_id, other.run_id)]
    means = [g.summary["final"]["val_loss"]["mean"] for g in (group, other)]
    stds = [g.summary["final"]["val_loss"]["std"] for g in (group, other)]
    assert found.values("val_loss") == pytest.approx(means)
    assert found.spreads("val_loss") == pytest.approx(stds)
    assert set(found.bands) == set(found.labels)
    assert ("optim.lr", ["0.1", "0.02"]) in found.differences
    cells = found.cells("val_loss")
    assert all(isinstance(c, str) and " ± " in c for c in cells)
    ax = found.plot().axes[0]
    assert len(ax.collections) == 2  # one band per group
    page = render_comparison_report(views, metric="val_loss")
    assert "a group over seeds: its mean, the band ± one std" in page


def test_bad_seeds_are_one_clear_error_before_anything_is_written(tmp_path: Path) -> None:
    for seeds, match in (("0,x", r"seeds must be integers separated by commas"),
                         ([1, 1], r"seeds must name each seed once; got \[1, 1\] \(1 twice\)"),
                         ([], r"seeds must be integers")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            run_seeds(_config(), seeds, out_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"optim.lr"):
        run_seeds(_config(**{"optim.lr": -1}), [0], out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_python_api_names_it_and_it_shows_itself(group: SeedsOutcome) -> None:
    assert skier.run_seeds is run_seeds
    html = group._repr_html_()
    assert html.count("<tr>") == 1 + len(SEEDS) + 1 and "mean ± std" in html
    assert "val_loss" in repr(group) and " ± " in repr(group)


@pytest.mark.slow
def test_tune_scores_a_trial_by_its_mean_over_seeds(tmp_path: Path) -> None:
    from skier.runner.tune import run_tune

    space = parse_space({"optim.lr": {"type": "float", "low": 0.01, "high": 0.05, "log": True}})
    tune = TuneConfig(method="random", trials=2, workers=1, seeds=[0, 1], prune="none")
    config = _config(**{"train.epochs": 2, "record.report": False, "record.plots": False,
                        "checkpoint.enabled": False})  # fmt: skip
    out = run_tune(config, space, tune=tune, out_dir=tmp_path)
    with RunStore(default_store_url(tmp_path)) as store:
        groups = store.list_runs(kind="seeds", parent_id=out.run_id)
        assert len(groups) == 2
        expected = []
        for g in groups:
            seeds = store.list_runs(kind="seed", parent_id=g.id)
            assert sorted(s.config["train"]["seed"] for s in seeds) == [0, 1]
            # a plain trial's value is the best val_loss of its run: here its mean over seeds
            best = [min(v for v in store.metrics(s.id).column("val_loss") if math.isfinite(v))
                    for s in seeds]  # fmt: skip
            expected.append(float(np.mean(best)))
    values = sorted(t["value"] for t in out.summary["trials"])
    assert values == pytest.approx(sorted(expected), rel=1e-12)


def test_cv_scores_a_config_by_its_mean_over_folds_and_seeds(tmp_path: Path) -> None:
    from skier.config.search import CrossValidationConfig
    from skier.runner.cv import run_cv

    config = _config(**{"train.epochs": 2, "record.report": False, "record.plots": False,
                        "checkpoint.enabled": False})  # fmt: skip
    cv = CrossValidationConfig(folds=2, workers=1, seeds=[0, 1])
    out = run_cv(config, cv=cv, out_dir=tmp_path, plots=False)
    assert out.summary["plan"] == "2-fold x seeds 0, 1"
    with RunStore(default_store_url(tmp_path)) as store:
        runs = store.list_runs(kind="cv_fold", parent_id=out.run_id)
        pairs = sorted((r.summary["fold"], r.config["train"]["seed"]) for r in runs)
        assert pairs == [(1, 0), (1, 1), (2, 0), (2, 1)]
    folds = out.summary["folds"]
    assert sorted((f["fold"], f["seed"]) for f in folds) == pairs
    values = [f["val_loss"] for f in folds]
    assert out.summary["value"] == pytest.approx(np.mean(values), rel=1e-12)
    assert out.summary["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)


@pytest.mark.slow
def test_tune_cv_mean_with_seeds_runs_every_fold_once_per_seed(tmp_path: Path) -> None:
    from skier.runner.tune import run_tune

    space = parse_space({"optim.lr": {"type": "float", "low": 0.01, "high": 0.05}})
    tune = TuneConfig(method="random", trials=1, workers=1, seeds=[0, 1], objective="cv_mean",
                      folds=2, prune="none")  # fmt: skip
    config = _config(**{"train.epochs": 2, "record.report": False, "record.plots": False,
                        "checkpoint.enabled": False})  # fmt: skip
    out = run_tune(config, space, tune=tune, out_dir=tmp_path)
    with RunStore(default_store_url(tmp_path)) as store:
        (cv,) = store.list_runs(kind="cv", parent_id=out.run_id)
        folds = store.list_runs(kind="cv_fold", parent_id=cv.id)
    assert sorted(f.config["train"]["seed"] for f in folds) == [0, 0, 1, 1]
    (trial,) = out.summary["trials"]
    assert trial["value"] == pytest.approx(cv.summary["value"])


@pytest.mark.slow
def test_tune_prunes_a_trial_on_its_running_mean_over_seeds(tmp_path: Path) -> None:
    from optuna.trial import TrialState

    from skier.runner.tune import run_tune

    # lr 1e-6 barely moves: once a 0.1 trial has run, its first seeds' mean is pruned.
    space = parse_space({"optim.lr": {"type": "categorical", "choices": [0.1, 1.0e-6]}})
    tune = TuneConfig(method="random", trials=5, workers=1, seeds=[0, 1, 2], prune="median",
                      prune_startup=1)  # fmt: skip
    config = _config(**{"train.epochs": 2, "record.report": False, "record.plots": False,
                        "checkpoint.enabled": False})  # fmt: skip
    out = run_tune(config, space, tune=tune, out_dir=tmp_path)
    pruned = [t for t in out.summary["trials"] if t["state"] == TrialState.PRUNED.name.lower()]
    assert pruned and all(t["params"]["optim.lr"] == 1.0e-6 for t in pruned)
    with RunStore(default_store_url(tmp_path)) as store:
        groups = {g.id: g for g in store.list_runs(kind="seeds", parent_id=out.run_id)}
        stopped = [g for g in groups.values() if g.status == "stopped"]
        assert stopped and all(g.stop_reason.startswith("pruned: mean val_loss") for g in stopped)
        for g in stopped:  # a pruned group stopped before its last seed
            assert len(store.list_runs(kind="seed", parent_id=g.id)) < 3
