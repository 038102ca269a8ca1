"""bench/accuracy.py without its long runs: protocol configs and splits, one tiny real run
through the store, the markdown report from result JSON, and PNG export in Chromium."""
from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


from bench import accuracy as cli  # noqa: E402
from bench import figures_png  # noqa: E402
from bench.accuracy_parts import protocols, reporting, running  # noqa: E402

from core.config import RunConfig  # noqa: E402
from core.data.examples import Examples  # noqa: E402
from core.data.splits import split_indices  # noqa: E402
from core.models import registry  # noqa: E402

HAPT_SUBJECT_PROTOCOLS = ("hapt6_subject", "hapt6_subject_best", "hapt12_subject")


def test_every_protocol_gives_valid_run_configs_with_distinct_names():
    names = []
    for p in protocols.PROTOCOLS.values():
        modes = [False] + ([True] if p.quick is not None else [])
        for quick in modes:
            for fold, cfg in protocols.protocol_configs(p, quick=quick):
                assert isinstance(cfg, RunConfig)
                assert RunConfig.from_json(cfg.to_json()) == cfg
                names.append(cfg.name)
    assert len(names) == len(set(names)), "two runs of the benchmark would share a name"


@pytest.mark.parametrize("name", HAPT_SUBJECT_PROTOCOLS)
def test_hapt_subject_protocols_hold_out_subjects_20_to_25(name):
    (fold, cfg), = protocols.protocol_configs(protocols.PROTOCOLS[name])
    d = cfg.data
    assert (d.source, d.split, d.window, d.stride, d.options["full"]) == ("hapt", "subject", 128, 64, True)
    assert d.options["classes"] == ("all12" if name == "hapt12_subject" else "basic6")
    assert sorted(map(int, d.test_groups)) == list(range(20, 26))
    assert set(map(int, d.val_groups)) <= set(range(1, 20)) and d.val_groups
    # the split module puts exactly those subjects in each split, and none in two
    groups = np.repeat([str(s) for s in range(1, 26)], 4)
    ex = Examples(x=np.zeros((len(groups), 6, 8), np.float32), y=np.arange(len(groups)) % 6, groups=groups,
                  ids=np.arange(len(groups)).astype(str), class_names=[str(i) for i in range(6)],
                  channel_names=["c"] * 6, sample_rate=50.0, signal="imu")
    train, val, test = (set(groups[i].tolist()) for i in split_indices(ex, d))
    assert test == {str(s) for s in range(20, 26)}
    assert val == set(d.val_groups)
    assert train == {str(s) for s in range(1, 20)} - val
    assert not (train & val or train & test or val & test)


def test_random_split_protocol_differs_from_the_subject_one_only_in_the_split():
    (_, subject), = protocols.protocol_configs(protocols.PROTOCOLS["hapt6_subject"])
    (_, random_), = protocols.protocol_configs(protocols.PROTOCOLS["hapt6_random"])
    assert random_.data.split == "random" and not random_.data.test_groups
    assert protocols.PROTOCOLS["hapt6_random"].target is None
    assert random_.model == subject.model and random_.data.window == subject.data.window
    assert random_.data.options == subject.data.options


def test_fsdd_leave_one_speaker_out_holds_each_real_speaker_out_once():
    folds = protocols.protocol_configs(protocols.PROTOCOLS["fsdd_loso"])
    pattern = re.compile(r"\d+_([A-Za-z]+)_\d+")
    bundled = {pattern.fullmatch(f.stem).group(1) for f in (ROOT / "data" / "fsdd" / "recordings").glob("*.wav")}
    assert sorted(label for label, _ in folds) == sorted(bundled) == sorted(protocols.FSDD_SPEAKERS)
    for label, cfg in folds:
        assert cfg.data.split == "subject" and cfg.data.test_groups == [label] and cfg.data.options["full"]
        assert label not in cfg.data.val_groups
        if not cfg.data.val_groups:  # no validation speaker: all four others train
            assert cfg.data.val_fraction == 0.0


def test_fixed_split_protocols_and_targets():
    for name, target in (("fsdd_fixed", 0.99), ("uea_basicmotions", 0.95), ("uea_japanesevowels", 0.95)):
        (_, cfg), = protocols.protocol_configs(protocols.PROTOCOLS[name])
        assert cfg.data.split == "fixed"
        assert protocols.PROTOCOLS[name].target == target


def test_model_override_takes_a_preset_or_a_zoo_model_only_where_selectable():
    best = protocols.PROTOCOLS["hapt6_subject_best"]
    (_, cfg), = protocols.protocol_configs(best, model="resnet1d")
    assert cfg.model.name == "resnet1d" and cfg.model.hparams == registry.spec("resnet1d").defaults()
    assert cfg.data.test_groups == protocols.HAPT_TEST_SUBJECTS
    (_, cfg), = protocols.protocol_configs(best, model="hapt_har_transformer")
    assert cfg.model.name == "har_transformer"
    assert "--model resnet1d" in best.command(model="resnet1d")
    with pytest.raises(protocols.ConfigError, match="neither a preset nor a zoo model"):
        protocols.protocol_configs(best, model="no_such_model")
    (_, cfg), = protocols.protocol_configs(protocols.PROTOCOLS["hapt6_subject"], model="resnet1d")
    assert cfg.model.name == "har_transformer"  # not selectable: the preset's model stays


def test_set_overrides_apply_to_every_fold_and_appear_in_the_command():
    loso = protocols.PROTOCOLS["fsdd_loso"]
    sets = ["train.mixup_alpha=0.4", "data.options.flite_voices=40"]
    folds = protocols.protocol_configs(loso, sets=sets)
    assert len(folds) == 5
    for label, cfg in folds:
        assert cfg.train.mixup_alpha == 0.4 and cfg.data.options["flite_voices"] == 40
        assert cfg.data.test_groups == [label]  # the fold still decides the test speaker
    assert "--set train.mixup_alpha=0.4 --set data.options.flite_voices=40" in loso.command(sets=sets)
    args = cli.parse_args(["--only", "fsdd_loso", "--set", "train.epochs=3", "--set", "train.seed=2"])
    assert args.sets == ["train.epochs=3", "train.seed=2"]
    with pytest.raises(protocols.ConfigError, match="key=value"):
        protocols.protocol_configs(loso, sets=["train.epochs"])


def test_quick_hapt_split_on_the_bundled_sample_keeps_subjects_apart():
    from core.data import load

    (_, cfg), = protocols.protocol_configs(protocols.PROTOCOLS["hapt6_subject"], quick=True)
    assert not cfg.data.options.get("full")
    groups = load(cfg.data).info["split_groups"]
    train, val, test = (set(groups[k]) for k in ("train", "val", "test"))
    assert test == {"3"} and val == {"4"} and train == {"1", "2"}


def test_every_quick_protocol_runs_on_bundled_data_against_a_bar():
    assert set(protocols.QUICK_PROTOCOLS) == {"hapt6_subject", "fsdd_fixed", "uea_basicmotions"}
    for name in protocols.QUICK_PROTOCOLS:
        p = protocols.PROTOCOLS[name]
        assert p.quick_target is not None and 0.3 < p.quick_target < p.target
        assert protocols.missing_data(p, quick=True) == ""
        for _, cfg in protocols.protocol_configs(p, quick=True):
            assert not cfg.data.options.get("full") and cfg.train.epochs <= 20
            assert cfg.name.startswith("accuracy-quick:")


def test_full_protocols_refuse_in_one_line_when_shared_data_is_absent(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(protocols, "SHARED_DATA", tmp_path / "nowhere")
    line = protocols.missing_data(protocols.PROTOCOLS["hapt6_subject"])
    assert "../shared/data/hapt/hapt_subjects01-25.csv.gz" in line and "\n" not in line
    assert protocols.missing_data(protocols.PROTOCOLS["hapt6_subject"], quick=True) == ""
    assert protocols.missing_data(protocols.PROTOCOLS["uea_basicmotions"]) == ""  # aeon ships it
    assert cli.main(["--only", "fsdd_fixed,hapt12_subject", "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "fsdd_fixed: skipped" in err and "hapt12_subject: skipped" in err


def test_unknown_protocol_is_refused_with_the_known_names(capsys):
    assert cli.main(["--only", "mnist"]) == 2
    assert "hapt6_subject" in capsys.readouterr().err


def test_one_real_run_lands_in_the_store_and_yields_every_reported_number(tmp_path):
    from core.store import Store

    cfg = protocols.preset_config("uea_basicmotions").with_overrides({"name": "accuracy-test", "train.epochs": 2, "train.probes.enabled": False,
                              "model.name": "resnet1d", "model.hparams": {"base_channels": 8, "num_stages": 1}})
    store = Store(tmp_path / "sigscope.db")
    run = running.execute_run(store, cfg)
    assert run["status"] == "completed", run
    assert store.get_run(run["run_id"])["status"] == "completed"
    assert 0.0 <= run["accuracy"] <= 1.0 and 0.0 <= run["macro_f1"] <= 1.0
    confusion = np.array(run["confusion"])
    assert confusion.shape == (4, 4) and confusion.sum() == run["split_sizes"]["test"] == 40
    assert np.trace(confusion) / confusion.sum() == pytest.approx(run["accuracy"])
    assert run["per_class"]["class_names"] and len(run["per_class"]["f1"]) == 4
    assert run["curves"]["epoch"] == [1, 2] and len(run["curves"]["val_accuracy"]) == 2
    assert run["epochs"] == 2 and run["seconds_per_epoch"] > 0
    assert run["params"] > 0 and run["flops"] > 0


def test_seeds_train_each_fold_n_times_and_score_the_ensemble(tmp_path):
    from core.infer import evaluate_split, load_run
    from core.store import Store

    loso = protocols.PROTOCOLS["fsdd_loso"]
    folds = protocols.protocol_configs(loso, seeds=3)
    assert len(folds) == 15 and [label for label, _ in folds[:4]] == ["george"] * 3 + ["jackson"]
    assert [cfg.train.seed for _, cfg in folds[:3]] == [0, 1, 2] and len({cfg.name for _, cfg in folds}) == 15
    assert loso.command(seeds=3).endswith("--seeds 3")

    tiny = {"train.epochs": 2, "train.probes.enabled": False, "model.name": "resnet1d",
            "model.hparams": {"base_channels": 8, "num_stages": 1}}
    base = protocols.preset_config("uea_basicmotions").with_overrides(tiny)
    configs = [("one", base.with_overrides({"name": f"seed{s}", "train.seed": s})) for s in range(2)]
    store = Store(tmp_path / "sigscope.db")
    runs = running._execute_all(store, configs, parallel=1)
    for run, (label, cfg) in zip(runs, configs):
        run.update({"fold": label, "config": cfg.to_dict()})
    (together,) = running.ensemble_runs(store, runs, seeds=2)
    assert [m["accuracy"] for m in together["members"]] == [r["accuracy"] for r in runs]
    assert [m["seed"] for m in together["members"]] == [0, 1]
    # each member alone scores what its run recorded; the ensemble is the mean of their probabilities
    for r in runs:
        assert evaluate_split(load_run(r["run_id"], store))["accuracy"] == pytest.approx(r["accuracy"])
    confusion = np.array(together["confusion"])
    assert confusion.sum() == 40 and np.trace(confusion) / 40 == pytest.approx(together["accuracy"])
    assert together["run_id"] == "+".join(r["run_id"] for r in runs)
    # --adapt-bn: the same fold scored with each member's BatchNorm statistics taken from the test inputs,
    # the unadapted ensemble kept beside it
    assert loso.command(seeds=3, adapt_bn=True).endswith("--seeds 3 --adapt-bn")
    (adapted,) = running.ensemble_runs(store, runs, seeds=2, adapt_bn=True)
    assert adapted["unadapted"]["accuracy"] == pytest.approx(together["accuracy"])
    confusion = np.array(adapted["confusion"])
    assert confusion.sum() == 40 and np.trace(confusion) / 40 == pytest.approx(adapted["accuracy"])
    assert [set(m) >= {"accuracy", "adapted_accuracy"} for m in adapted["members"]] == [True, True]
    assert [m["accuracy"] for m in adapted["members"]] == [r["accuracy"] for r in runs]
    (alone,) = running.ensemble_runs(store, runs[:1], seeds=1, adapt_bn=True)  # --adapt-bn without --seeds
    assert alone["unadapted"]["accuracy"] == pytest.approx(runs[0]["accuracy"])
    assert alone["members"][0]["adapted_accuracy"] == alone["accuracy"]


# ---------------------------------------------------------------------------- report
def _result(name: str = "hapt6_subject", accuracy_value: float = 0.9612, **extra) -> dict:
    p = protocols.PROTOCOLS[name]
    classes = ["WALKING", "SITTING", "LAYING"]
    result = {
        "protocol": name, "title": p.title, "data": p.data, "split": p.split, "mode": "full",
        "preset": p.preset, "target": p.target, "command": p.command(),
        "date": "2026-11-23T10:00:00+00:00",
        "machine": {"cpu": "AMD EPYC", "cores": 2, "torch_threads": 2, "torch": "2.13.0+cpu", "python": "3.11.7"},
        "model": "har_transformer", "params": 721215, "flops": 201195072, "seconds_per_epoch": 12.5,
        "epochs": 40, "epochs_configured": 40, "accuracy": accuracy_value, "macro_f1": 0.955,
        "confusion": [[50, 2, 0], [3, 40, 7], [0, 1, 60]],
        "per_class": {"class_names": classes, "precision": [0.94, 0.93, 0.9], "recall": [0.96, 0.8, 0.98],
                      "f1": [0.95, 0.86, 0.94], "support": [52, 50, 61]},
        "curves": {"epoch": [1, 2, 3], "train_loss": [1.2, 0.7, 0.5], "val_loss": [1.0, 0.8, 0.6],
                   "train_accuracy": [0.5, 0.8, 0.9], "val_accuracy": [0.6, 0.75, 0.85]},
        "run_ids": ["20261123-100000-abcdef"], "runs_dir": "runs/accuracy",
        "figures": {"curves": f"{name}-curves.png", "confusion": f"{name}-confusion.png"},
    }
    result["result"] = running.verdict(accuracy_value, p.target)
    result.update(extra)
    return result


def test_verdict_against_the_target():
    assert running.verdict(0.95, 0.95) == "PASS"
    assert running.verdict(0.9499, 0.95) == "FAIL"
    assert running.verdict(None, 0.95) == "FAIL"
    assert running.verdict(0.5, None) == "-"


def test_report_from_result_json_has_the_table_commands_sections_and_keeps_notes(tmp_path):
    results, md = tmp_path / "results", tmp_path / "RESULTS.md"
    reporting.write_json(_result(), results)
    reporting.write_json(_result("hapt6_random", 0.991), results)
    reporting.write_json({**_result("fsdd_fixed"), "mode": "quick"}, results)  # quick results stay out
    reporting.write_report(results, md)
    text = md.read_text()
    header = "| " + " | ".join(reporting.TABLE_HEADER) + " |"
    assert header in text
    row = next(line for line in text.splitlines() if line.startswith("| hapt6_subject |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:] == ["har_transformer", "721.2 k", "201.2 M", "12.50", "40", "0.9612", "0.9550", ">= 0.95",
                         "PASS"]
    assert "| hapt6_random |" in text and "| fsdd_fixed |" in text and "not run yet" in text
    assert ".venv/bin/python bench/accuracy.py --only hapt6_subject" in text
    assert "![hapt6_subject confusion matrix](results/hapt6_subject-confusion.png)" in text
    assert "| SITTING | 0.930 | 0.800 | 0.860 | 50 |" in text
    assert "AMD EPYC, 2 cores" in text and "torch 2.13.0+cpu" in text
    # the lead's discussion survives a regeneration
    md.write_text(text.replace(protocols.NOTES_PLACEHOLDER, "Random windows leak the subject's gait."))
    reporting.write_json(_result(accuracy_value=0.94), results)
    reporting.write_report(results, md)
    again = md.read_text()
    assert "Random windows leak the subject's gait." in again
    assert "| hapt6_subject |" in again and "0.9400" in again and "FAIL" in again


def test_fold_protocol_report_lists_every_fold(tmp_path):
    folds = [{"fold": s, "run_id": f"run-{s}", "accuracy": 0.9 + i / 100, "macro_f1": 0.9, "epochs": 40,
              "seconds_per_epoch": 3.0, "curves": {"epoch": [1], "train_loss": [1.0]}}
             for i, s in enumerate(protocols.FSDD_SPEAKERS)]
    reporting.write_json(_result("fsdd_loso", 0.92, folds=folds, pooled_accuracy=0.921, epochs=[40] * 5), tmp_path)
    text = reporting.render_report(reporting.load_results(tmp_path), "notes")
    for s in protocols.FSDD_SPEAKERS:
        assert f"| {s} |" in text
    assert "pooled over all folds 0.9210" in text and "40 x5" in text
    assert "Each seed alone" not in text and "ensemble of" not in text
    for f in folds:  # an ensemble of seeds per fold: each seed's own accuracy beside the fold's
        f["members"] = [{"run_id": f"{f['run_id']}-{k}", "seed": k, "accuracy": 0.88 + k / 100} for k in range(3)]
    reporting.write_json(_result("fsdd_loso", 0.92, folds=folds, pooled_accuracy=0.921, epochs=[40] * 5, seeds=3),
                        tmp_path)
    text = reporting.render_report(reporting.load_results(tmp_path), "notes")
    assert "each fold an ensemble of 3 seeds" in text and "| 0.880 / 0.890 / 0.900 |" in text
    assert "Without adaptation" not in text
    for f in folds:  # --adapt-bn: the adapted score leads, the unadapted one beside it
        f["unadapted"] = {"accuracy": 0.85, "macro_f1": 0.84}
        for m in f["members"]:
            m["adapted_accuracy"] = m["accuracy"] + 0.05
    reporting.write_json(_result("fsdd_loso", 0.92, folds=folds, pooled_accuracy=0.921, epochs=[40] * 5, seeds=3,
                                unadapted={"accuracy": 0.85, "macro_f1": 0.84}), tmp_path)
    text = reporting.render_report(reporting.load_results(tmp_path), "notes")
    assert "Without adaptation" in text and "| 0.8500 |" in text and "| 0.930 / 0.940 / 0.950 |" in text
    assert "without it accuracy 0.8500" in text


def test_pooled_per_class_from_a_summed_confusion():
    pc = running.pooled_per_class([[8, 2], [0, 10]], ["a", "b"])
    assert pc["support"] == [10, 10]
    assert pc["recall"] == pytest.approx([0.8, 1.0]) and pc["precision"] == pytest.approx([1.0, 10 / 12])


@pytest.mark.skipif(not figures_png.chromium_available(), reason=figures_png.why_unavailable() or "no chromium")
def test_figures_render_to_readable_pngs(tmp_path):
    from PIL import Image, ImageStat

    result = _result()
    names, errors = {}, []

    def render():  # its own thread: the browser tests keep Playwright's sync API (an asyncio loop)
        try:       # running on pytest's main thread, and a second sync_playwright there is refused
            with figures_png.PngRenderer() as png:
                names.update(reporting.write_figures(result, tmp_path, png))
        except Exception as e:  # noqa: BLE001 - re-raised on the test's thread
            errors.append(e)

    worker = threading.Thread(target=render)
    worker.start()
    worker.join(timeout=180)
    if errors:
        raise errors[0]
    for kind in ("curves", "confusion"):
        img = Image.open(tmp_path / names[kind])
        assert img.width > 400 and img.height > 250
        assert ImageStat.Stat(img.convert("L")).stddev[0] > 10, f"{kind} PNG looks blank"
    wide = Image.open(tmp_path / names["curves"])
    assert wide.width > wide.height  # loss and accuracy side by side
    assert names == {"curves": "hapt6_subject-curves.png", "confusion": "hapt6_subject-confusion.png"}


def test_parallel_folds_run_in_worker_processes_into_one_store(tmp_path, monkeypatch):
    import types

    from core.store import Store

    # A spawned worker re-imports the parent's __main__; after an AppTest in this process that is
    # a Streamlit test script, so stand in an empty one (as bench/accuracy.py, run as a script, is).
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))

    tiny = {"train.epochs": 1, "train.probes.enabled": False, "model.name": "resnet1d",
            "model.hparams": {"base_channels": 8, "num_stages": 1}}
    configs = [(name, protocols.preset_config("uea_basicmotions").with_overrides({**tiny, "name": name, "train.seed": seed}))
               for seed, name in enumerate(["fold-a", "fold-b"])]
    store = Store(tmp_path / "sigscope.db")
    runs = running._execute_all(store, configs, parallel=2)
    assert [r["status"] for r in runs] == ["completed", "completed"]
    stored = {r["id"]: r for r in store.list_runs()}
    assert {stored[r["run_id"]]["name"] for r in runs} == {"fold-a", "fold-b"}
    assert all(r["split_sizes"]["test"] == 40 and 0.0 <= r["accuracy"] <= 1.0 for r in runs)
