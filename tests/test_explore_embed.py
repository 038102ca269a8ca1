"""Explore's engine, first half: every window of a run's data in one table, embedded through
the run's model (one pass gives the map and the answers), cached, and drawn in 2-D by a
seeded PCA, t-SNE or UMAP. Real data and a real model: the bundled demo-imu run on the
bundled HAPT sample (1,257 windows)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.config import DataConfig
from core.data import load
from core.demo import install_bundled
from core.errors import ConfigError, SigscopeError
from core.explore import (PROJECTIONS, Embedding, EmbeddingError, embed_data, embed_run, project, split_inputs,
                          window_origin, window_table)
from core.infer import load_run
from core.infer.evaluate import split_probabilities
from core.store import Store


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A store holding the bundled demo-imu run; the default store (the CLI's) points at it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIGSCOPE_RUNS_DIR", str(tmp_path_factory.mktemp("explore-runs")))
        store = Store()
        yield store, install_bundled(store, "demo-imu")


@pytest.fixture(scope="module")
def embedding(demo):
    store, run_id = demo
    return embed_run(run_id, store)


def small(embedding: Embedding, n: int) -> Embedding:
    """The first n windows of an embedding, as an uncached embedding of its own."""
    index = np.arange(n)
    return Embedding(table=embedding.table.subset(index), vectors=embedding.vectors[index], kind="model",
                     run_id=None, probabilities=embedding.probabilities[index])


def test_window_table_says_where_each_hapt_window_comes_from(demo):
    store, run_id = demo
    bundle = load(load_run(run_id, store).config.data)
    table = window_table(bundle)
    sizes = bundle.info["split_sizes"]
    assert len(table) == sum(sizes.values())
    assert {s: int((table.split == s).sum()) for s in ("train", "val", "test")} == sizes
    for i in (0, len(table) // 2, len(table) - 1):
        subject, session, start = table.ids[i].split(":")
        assert table.groups[i] == subject
        assert table.source[i] == f"subject {subject}, session {session}"
        assert table.start_s[i] == pytest.approx(int(start) / 50.0)
    frame = table.frame()
    assert list(frame.columns) == ["id", "split", "label", "label_index", "group", "source", "start_s"]
    assert set(frame["label"]) == set(bundle.class_names)
    assert table.counts()["test"] == dict(zip(bundle.class_names, bundle.info["split_class_counts"]["test"]))


def test_window_origin_of_audio_and_unknown_ids():
    assert window_origin("0_george_0.wav", "audio", 8000.0) == ("0_george_0.wav", 0.0)
    assert window_origin("walk.wav@12000", "audio", 8000.0) == ("walk.wav", 1.5)
    source, start = window_origin("synthetic:3", "imu", 50.0)
    assert source == "synthetic:3" and np.isnan(start)


def test_embed_run_covers_every_window_and_reproduces_the_runs_test_answers(demo, embedding):
    store, run_id = demo
    predictor = load_run(run_id, store)
    bundle = load(predictor.config.data)
    n = sum(bundle.info["split_sizes"].values())
    assert embedding.vectors.shape == (n, predictor.model.num_features)
    assert embedding.vectors.dtype == np.float32 and np.isfinite(embedding.vectors).all()
    assert embedding.kind == "model" and embedding.run_id == run_id
    test = embedding.table.split == "test"
    answers = split_probabilities(predictor, "test", bundle)
    np.testing.assert_array_equal(embedding.table.ids[test], answers.ids)
    np.testing.assert_allclose(embedding.probabilities[test], answers.probabilities, atol=1e-5)
    assert embedding.correct[test].mean() == (answers.probabilities.argmax(axis=1) == answers.labels).mean()
    assert embedding.confidence.shape == (n,) and (embedding.confidence <= 1.0).all()
    # the inputs the map is made of are the inputs the run was scored on
    np.testing.assert_array_equal(split_inputs(predictor, bundle, "test").shape, (test.sum(), *predictor.input_shape))


def test_embedding_is_cached_until_the_checkpoint_changes(demo, embedding):
    store, run_id = demo
    calls = []
    again = embed_run(run_id, store, progress=lambda done, total, stage: calls.append(stage))
    assert again.cached and not calls
    np.testing.assert_array_equal(again.vectors, embedding.vectors)
    np.testing.assert_array_equal(again.probabilities, embedding.probabilities)
    np.testing.assert_array_equal(again.table.ids, embedding.table.ids)
    np.testing.assert_array_equal(again.table.start_s, embedding.table.start_s)
    # a checkpoint written again (here: its mtime moved) is embedded again, batch by batch
    ckpt = os.path.join(store.get_run(run_id)["run_dir"], "checkpoints", "best.pt")
    stat = os.stat(ckpt)
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    fresh = embed_run(run_id, store, splits=("train", "val", "test"), batch_size=512,
                      progress=lambda done, total, stage: calls.append((done, total, stage)))
    assert not fresh.cached
    assert ("embedding" in [c[2] for c in calls if isinstance(c, tuple)])
    assert calls[-1] == (len(embedding), len(embedding), "embedding")
    np.testing.assert_allclose(fresh.vectors, embedding.vectors, atol=1e-5)


def test_projections_are_deterministic_with_a_seed(embedding):
    few = small(embedding, 60)
    for method in ("pca", "tsne"):
        first = project(few, method, seed=0)
        assert first.xy.shape == (60, 2) and np.isfinite(first.xy).all() and first.method == method
        np.testing.assert_array_equal(first.xy, project(few, method, seed=0).xy)
    assert not np.allclose(project(few, "tsne", seed=0).xy, project(few, "tsne", seed=1).xy)


def test_a_runs_projection_is_cached_beside_its_embedding(embedding):
    first = project(embedding, "pca", seed=3)
    again = project(embedding, "pca", seed=3)
    assert again.cached and not first.cached
    np.testing.assert_array_equal(first.xy, again.xy)
    assert first.xy.shape == (len(embedding), 2)


def test_umap_is_deterministic_with_a_seed_and_compiles_once_per_machine(embedding, tmp_path):
    few = small(embedding, 200)
    first = project(few, "umap", seed=0)
    assert first.xy.shape == (200, 2) and np.isfinite(first.xy).all()
    np.testing.assert_array_equal(first.xy, project(few, "umap", seed=0).xy)
    # umap-learn's numba functions, cached on disk by core.explore.project.cache_numba: the
    # next process loads every one of them instead of compiling them again (17-21 s of CPU)
    np.save(tmp_path / "few.npy", few.vectors)
    heavy = ("umap_.fast_knn_indices", "umap_.smooth_knn_dist", "umap_.compute_membership_strengths",
             "layouts._nb_optimize_layout_euclidean_single_epoch")  # 17 of the 21 s
    code = ("import sys, importlib, numpy as np\n"
            "from core.explore.project import _umap, one_thread\n"
            "with one_thread():\n    xy = _umap(np.load(sys.argv[1]), 0)\n"
            "np.save(sys.argv[2], xy)\n"
            "for name in sys.argv[3:]:\n"
            "    module, fn = name.split('.')\n"
            "    stats = getattr(importlib.import_module('umap.' + module), fn).stats\n"
            "    print(name, len(stats.cache_misses), len(stats.cache_hits))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "few.npy"), str(tmp_path / "xy.npy"), *heavy],
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    compiled = {name: (int(missed), int(hit)) for name, missed, hit in
                (line.split() for line in done.stdout.splitlines()[-len(heavy):])}
    assert compiled == {name: (0, 1) for name in heavy}, f"(compiled, loaded from cache) per function: {compiled}"
    np.testing.assert_array_equal(np.load(tmp_path / "xy.npy"), first.xy)


def test_too_few_windows_for_tsne_or_umap_is_a_clear_message(embedding):
    few = small(embedding, 10)
    for method in ("tsne", "umap"):
        with pytest.raises(EmbeddingError, match=rf"{PROJECTIONS[method].label} needs at least "
                                                 rf"{PROJECTIONS[method].min_windows} windows; .* has 10"):
            project(few, method)
    assert project(few, "pca").xy.shape == (10, 2)
    with pytest.raises(SigscopeError, match="projection method 'mds'"):
        project(few, "mds")


def test_a_run_without_its_checkpoint_is_a_clear_message(tmp_path):
    store = Store(tmp_path / "sigscope.db")
    run_id = install_bundled(store, "demo-imu")
    shutil.rmtree(os.path.join(store.get_run(run_id)["run_dir"], "checkpoints"))
    with pytest.raises(ConfigError, match=f"run {run_id} has no checkpoint") as caught:
        embed_run(run_id, store)
    assert "\n" not in str(caught.value)


def test_a_model_without_forward_features_is_a_clear_message(demo, monkeypatch):
    from core.models.base import ZooModel

    store, run_id = demo
    model_class = type(load_run(run_id, store).model)
    monkeypatch.setattr(model_class, "forward_features", ZooModel.forward_features)
    with pytest.raises(ConfigError, match="model har_transformer has no forward_features embedding") as caught:
        embed_run(run_id, store, splits=("test",), use_cache=False)
    assert "\n" not in str(caught.value)


def test_embed_data_before_any_model():
    cfg = DataConfig(source="synthetic_imu", options={"n_classes": 3, "per_class": 12}, window=32)
    stages = []
    emb = embed_data(cfg, progress=lambda done, total, stage: stages.append(stage))
    assert emb.kind == "features" and emb.run_id is None and emb.probabilities is None and emb.predicted is None
    assert emb.vectors.shape == (36, 36) and emb.vectors.dtype == np.float32  # PCA: at most min(N, 50) dims
    assert sorted(set(emb.table.split)) == ["test", "train", "val"] and "PCA" in stages
    np.testing.assert_array_equal(emb.vectors, embed_data(cfg).vectors)
    sub = embed_data(cfg, max_windows=25, seed=1)
    assert len(sub) == 25 == len(sub.table) and len(set(sub.table.ids)) == 25
    assert project(sub, "tsne", seed=0).xy.shape == (25, 2)


def test_cli_explore_embed_prints_every_point(demo, embedding, capsys):
    from core.__main__ import main

    store, run_id = demo
    assert main(["explore", "embed", "--run", "demo-imu", "--method", "pca", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"] == run_id and out["n"] == len(embedding) and out["dim"] == embedding.dim
    assert out["embedding_cached"] is True and out["method"] == "pca"
    point = out["points"][0]
    assert {"id", "split", "label", "predicted", "confidence", "x", "y", "group", "source", "start_s"} <= set(point)
    assert len(out["points"]) == len(embedding)
    assert sum(out["counts"]["test"].values()) == int((embedding.table.split == "test").sum())

    assert main(["explore", "embed", "--run", run_id, "--split", "test"]) == 0
    text = capsys.readouterr().out
    assert "embedded in 32 dimensions" in text and "PCA map (seed 0)" in text and "LAYING" in text

    assert main(["explore", "embed", "--run", "no-such-run"]) == 2
    assert "no run with that id or name" in capsys.readouterr().err

