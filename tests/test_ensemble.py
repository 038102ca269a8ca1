"""Ensembles: several trained runs answer together. Their answer is the mean of the members'
probabilities, their test score is measured on the members' own test split, and runs that
do not fit together are refused with the reason."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.config import DataConfig, ModelConfig, OptimConfig, RunConfig, ScheduleConfig, TrainConfig
from core.errors import ConfigError
from core.infer import (Ensemble, classify_file, evaluate_split, load_ensemble, load_run, load_run_dir,
                        split_probabilities)
from core.store import Store
from tests.test_infer import FSDD, NO_PROBES, save_untrained_run, train_stored

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = {"base_channels": 8, "num_stages": 2, "blocks_per_stage": 1}


def _fsdd_run(name: str, features: str, seed: int) -> str:
    cfg = RunConfig(
        name=name,
        data=DataConfig(source="fsdd", split="fixed", features=features, n_mfcc=13, normalization="per_example",
                        val_fraction=0.1),
        model=ModelConfig(name="resnet1d", hparams=TINY), optim=OptimConfig(lr=3e-3),
        schedule=ScheduleConfig(name="onecycle"),
        train=TrainConfig(epochs=4, batch_size=32, seed=seed, device="cpu", mixup_alpha=0.2, probes=NO_PROBES))
    return train_stored(cfg)


@pytest.fixture(scope="module")
def two_runs() -> list[str]:
    """Two different views of the bundled FSDD sample: MFCCs, and MFCCs with their deltas."""
    return [_fsdd_run("ens-mfcc", "mfcc", 0), _fsdd_run("ens-deltas", "mfcc_deltas", 1)]


def test_an_ensemble_answers_with_the_mean_of_its_members(two_runs):
    ensemble = load_ensemble(two_runs)
    assert ensemble.run_ids == two_runs and "ensemble of 2 runs" in ensemble.describe()
    clip = sorted(FSDD.glob("3_*_0.wav"))[0]
    together = classify_file(ensemble, clip, explain="none")
    alone = [classify_file(load_run(r), clip, explain="none") for r in two_runs]
    assert np.allclose(together.window_probs, np.mean([a.window_probs for a in alone], axis=0), atol=1e-6)
    assert [m["run_id"] for m in together.members] == two_runs
    assert [m["label"] for m in together.members] == [a.label for a in alone]
    assert together.to_json()["members"][1]["features"] == "mfcc_deltas"
    assert abs(sum(together.probabilities.values()) - 1.0) < 1e-5


def test_a_runs_split_score_is_the_score_it_was_tested_with(two_runs):
    store = Store()
    for run_id in two_runs:
        scores = evaluate_split(load_run(run_id), "test")
        assert scores["n"] == 100  # takes 0-1 of 5 speakers x 10 digits in the bundled sample
        assert scores["accuracy"] == pytest.approx(store.final_metrics(run_id)["test_accuracy"], abs=1e-6)
    ensemble = evaluate_split(load_ensemble(two_runs), "test")
    for run_id in two_runs:
        assert ensemble["member_accuracy"][run_id] == pytest.approx(store.final_metrics(run_id)["test_accuracy"])
    first = split_probabilities(load_run(two_runs[0]), "test")
    second = split_probabilities(load_run(two_runs[1]), "test")
    assert list(first.ids) == list(second.ids)
    mean = (first.probabilities + second.probabilities) / 2
    assert ensemble["accuracy"] == pytest.approx(float((mean.argmax(axis=1) == first.labels).mean()))
    assert np.array(ensemble["confusion"]).sum() == 100 and len(ensemble["class_names"]) == 10


def test_runs_that_do_not_fit_together_are_refused_with_the_reason(two_runs, tmp_path):
    imu = load_run_dir(save_untrained_run(tmp_path / "imu", "resnet1d", DataConfig(source="hapt"), (6, 128),
                                          ["A", "B"], ["ax", "ay", "az", "gx", "gy", "gz"], 50.0, "imu",
                                          hparams=TINY))
    audio = load_run(two_runs[0])
    with pytest.raises(ConfigError, match="cannot join an ensemble.*classes"):
        Ensemble([audio, imu])
    with pytest.raises(ConfigError, match="at least one run"):
        Ensemble([])
    with pytest.raises(ConfigError, match="at least two runs"):
        load_ensemble([two_runs[0]])
    assert Ensemble([audio]).describe() == audio.describe(), "one run is an ensemble of one"
    with pytest.raises(ConfigError, match="name one run twice"):
        load_ensemble([two_runs[0], two_runs[0]])
    shorter = load_run(two_runs[1])
    shorter.window = audio.window // 2
    with pytest.raises(ConfigError, match="window"):
        Ensemble([audio, shorter])


def test_members_tested_on_other_examples_are_not_scored_together(two_runs):
    other_split = RunConfig(
        name="ens-other-split",
        data=DataConfig(source="fsdd", split="subject", test_groups=["george"], features="mfcc", n_mfcc=13,
                        normalization="per_example", val_fraction=0.0),
        model=ModelConfig(name="resnet1d", hparams=TINY),
        train=TrainConfig(epochs=1, batch_size=32, device="cpu", probes=NO_PROBES))
    run_id = train_stored(other_split)
    with pytest.raises(ConfigError, match="other examples"):
        evaluate_split(load_ensemble([two_runs[0], run_id]), "test")
    assert Path(load_run(run_id).checkpoint).is_file()


def test_the_cli_predicts_and_evaluates_with_several_runs(two_runs, capsys):
    import json

    from core.__main__ import main as cli

    clip = sorted(FSDD.glob("7_*_1.wav"))[0]
    assert cli(["predict", "--run", two_runs[0], "--run", "ens-deltas", str(clip), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)[0]
    assert [m["run_id"] for m in answer["members"]] == two_runs and answer["label"] in [str(d) for d in range(10)]
    assert cli(["evaluate", "--run", two_runs[0], "--run", two_runs[1], "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n"] == 100 and set(scores["member_accuracy"]) == set(two_runs)
    assert cli(["evaluate", "--run", two_runs[0]]) == 0
    text = capsys.readouterr().out
    assert f"run {two_runs[0]} on its test split (100 examples): accuracy" in text
    assert cli(["evaluate", "--run", two_runs[0], "--run", two_runs[0]]) == 2
    assert "name one run twice" in capsys.readouterr().err


def test_the_cli_adapts_batchnorm_to_the_given_files_or_the_test_split(two_runs, capsys):
    import json

    from core.__main__ import main as cli

    clips = [str(c) for c in sorted(FSDD.glob("*_nicolas_*.wav"))[:10]]
    assert cli(["predict", "--run", two_runs[0], "--adapt-bn", *clips, "--json"]) == 0
    captured = capsys.readouterr()
    answers = json.loads(captured.out)
    assert "adapted BatchNorm statistics to 10 windows of 10 file(s)" in captured.err
    assert len(answers) == 10 and all(any("BatchNorm statistics adapted" in n for n in a["notes"]) for a in answers)
    assert cli(["evaluate", "--run", two_runs[0], "--run", two_runs[1], "--adapt-bn", "--json"]) == 0
    adapted = json.loads(capsys.readouterr().out)
    plain = evaluate_split(load_ensemble(two_runs), "test")
    assert adapted["adapt_bn"] and adapted["n"] == plain["n"] == 100
    assert set(adapted["member_accuracy"]) == set(two_runs)
    assert evaluate_split(load_ensemble(two_runs), "test", adapt_bn=True)["accuracy"] == adapted["accuracy"]
