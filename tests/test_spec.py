"""The one typed spec (core.spec): every choice a run makes is declared once, checked before
anything runs, listed by `python -m core options`, and round-trips config -> JSON -> --set."""
from __future__ import annotations

import inspect
import json
import random
from pathlib import Path

import pytest

from core import presets, spec
from core.__main__ import main
from core.config import RunConfig, parse_sets
from core.errors import ConfigError
from core.models import registry
from core.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    folder = tmp_path / "runs"
    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(folder))
    return folder


def active(config) -> dict:
    """{key: value} of every choice that applies (tuples as lists)."""
    return {e.key: list(e.value) if isinstance(e.value, tuple) else e.value
            for e in spec.params(config) if e.active}


def as_sets(config: RunConfig) -> list[str]:
    """The config as `--set key=value` arguments, one per choice that applies."""
    return [f"{key}={json.dumps(value)}" for key, value in active(config).items()]


def sample_configs(n: int = 3) -> list[RunConfig]:
    """Random valid points of every model's space on data it takes (a sweep's draws)."""
    rng = random.Random(0)
    out = []
    for name in registry.list_models():
        kind = registry.spec(name).input_kind
        setup = presets.data_setups(kind)[0]
        base = RunConfig().to_dict()
        base["data"] = setup.data.to_dict()
        base["model"] = {"name": name, "hparams": {}}
        base = spec.validate(base, environment=False)
        for _ in range(n):
            for _ in range(30):
                values = {e.key: e.param.sample(rng) for e in spec.sweep_params(base)}
                try:
                    out.append(base.with_overrides(values, explicit=False))
                    break
                except ConfigError:
                    continue
    return out


CONFIGS = [RunConfig().validated()] + [p.config for p in presets.list_presets()]


# ---- round trips ----------------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS + sample_configs(), ids=lambda c: f"{c.model.name}-{c.data.source}")
def test_every_key_round_trips_through_json_and_set(config):
    assert RunConfig.from_json(config.to_json()) == config
    again = RunConfig().with_overrides(parse_sets(as_sets(config)))
    assert active(again) == active(config)
    assert spec.problems(again) == []


def test_sweep_samples_are_valid_and_cover_every_model():
    configs = sample_configs(2)
    assert {c.model.name for c in configs} == set(registry.list_models())
    for c in configs:
        assert spec.problems(c, environment=False) == []


# ---- bad values, refused before anything runs ----------------------------------------------
HAPT = ["--dataset", "hapt"]
FSDD = ["--dataset", "fsdd", "--set", "data.features=stack4", "--model", "audio_resnet_attention"]
BAD = [
    # run
    ([], "name=" + "x" * 600, "name"),
    # data
    ([], "data.source=mnist", "data.source"),
    ([], "data.window=0", "data.window"),
    ([], "data.window=abc", "data.window"),
    ([], "data.window=-2.5s", "data.window"),
    ([], "data.stride=nan", "data.stride"),
    ([], "data.label_mode=vote", "data.label_mode"),
    ([], "data.normalization=minmax", "data.normalization"),
    ([], "data.split=kfold", "data.split"),
    ([], "data.val_fraction=-0.1", "data.val_fraction"),
    ([], "data.val_fraction=inf", "data.val_fraction"),
    ([], "data.test_fraction=0.95", "data.test_fraction"),
    ([], "data.val_fraction=0.85", "data.test_fraction"),  # with test 0.2: no training data left
    ([], "data.split_seed=-1", "data.split_seed"),
    ([], "data.max_examples=1", "data.max_examples"),
    ([], "data.test_groups=[\"3\"]", "data.test_groups"),  # a subject split's choice on a stratified split
    ([], "data.sample_rate=16000", "data.sample_rate"),  # an audio choice on IMU data
    (FSDD, "data.sample_rate=100", "data.sample_rate"),
    (FSDD, "data.clip_seconds=0", "data.clip_seconds"),
    (FSDD, "data.features=wavelet", "data.features"),
    (FSDD, "data.n_mels=1", "data.n_mels"),
    (FSDD, "data.n_mels=200", "data.n_mels"),  # more mel bands than FFT bins
    (FSDD, "data.n_fft=8", "data.n_fft"),
    (FSDD, "data.hop_length=0", "data.hop_length"),
    (FSDD, "data.mfcc_c0=maybe", "data.mfcc_c0"),
    (FSDD, "data.n_mfcc=13", "data.n_mfcc"),  # only with mfcc features
    (FSDD, "data.normalization=per_utterance --set data.features=raw", "data.features"),
    # source options
    ([], "data.options.n_classes=1", "data.options.n_classes"),
    ([], "data.options.noise=nan", "data.options.noise"),
    ([], "data.options.per_class=2.5", "data.options.per_class"),
    ([], "data.options.classes=all12", "data.options.classes"),  # a hapt option on synthetic data
    (HAPT, "data.options.classes=all13", "data.options.classes"),
    (HAPT, "data.options.full=perhaps", "data.options.full"),
    (HAPT, "data.options.chunk_rows=10", "data.options.chunk_rows"),
    # augmentation
    ([], "data.augment.jitter.p=2", "data.augment.jitter.p"),
    ([], "data.augment.jitter.params.sigma=nan", "data.augment.jitter.params.sigma"),
    ([], "data.augment.jitter.params.amount=1", "data.augment.jitter.params"),
    ([], "data.augment.blur.p=0.5", "data.augment.blur"),
    ([], "data.augment.pitch_shift.p=0.5", "data.augment"),  # an audio augmentation on IMU data
    (FSDD, "data.augment.noise.params.snr_db=[30,10]", "data.augment.noise.params.snr_db"),
    # model
    ([], "model.name=alexnet", "model.name"),
    ([], "depth=3", "model.hparams.depth"),
    ([], "base_channels=1000", "model.hparams.base_channels"),
    ([], "base_channels=wide", "model.hparams.base_channels"),
    ([], "block=dense", "model.hparams.block"),
    ([], "dropout=-0.1", "model.hparams.dropout"),
    ([], "block=bottleneck --set base_channels=10", "model.hparams"),
    ([], "conv=grouped --set groups=8 --set base_channels=12", "model.hparams"),
    (["--model", "har_transformer"], "heads=5", "model.hparams"),
    ([], "model.name=audio_resnet_attention", "model.name"),  # a spectrogram model on IMU data
    # optimizer
    ([], "optim.name=lbfgs", "optim.name"),
    ([], "optim.lr=nan", "optim.lr"),
    ([], "optim.lr=inf", "optim.lr"),
    ([], "optim.lr=Infinity", "optim.lr"),
    ([], "optim.lr=fast", "optim.lr"),
    ([], "optim.lr=0", "optim.lr"),
    ([], "optim.lr=-0.001", "optim.lr"),
    ([], "optim.weight_decay=-1", "optim.weight_decay"),
    ([], "optim.momentum=0.5", "optim.momentum"),  # SGD's, not AdamW's
    ([], "optim.betas=[1.5,0.9]", "optim.betas"),
    ([], "optim.betas=[0.9]", "optim.betas"),
    # schedule
    ([], "schedule.name=exponential_decay", "schedule.name"),
    ([], "schedule.warmup_epochs=-1", "schedule.warmup_epochs"),
    ([], "schedule.step_size=3", "schedule.step_size"),  # the step schedule's, not cosine's
    (["--set", "schedule.name=step"], "schedule.step_size=0", "schedule.step_size"),
    (["--set", "schedule.name=step"], "schedule.gamma=0", "schedule.gamma"),
    ([], "schedule.min_lr=nan", "schedule.min_lr"),
    (["--set", "schedule.name=plateau"], "schedule.plateau_patience=0", "schedule.plateau_patience"),
    (["--set", "schedule.name=plateau"], "data.val_fraction=0", "schedule.name"),
    # training
    ([], "train.epochs=-1", "train.epochs"),
    ([], "train.epochs=0", "train.epochs"),
    ([], "train.epochs=many", "train.epochs"),
    ([], "train.epochs=1.5", "train.epochs"),
    ([], "train.batch_size=0", "train.batch_size"),
    ([], "train.batch_size=3.5", "train.batch_size"),
    ([], "train.seed=abc", "train.seed"),
    ([], "train.seed=-1", "train.seed"),
    ([], "train.device=tpu", "train.device"),
    ([], "train.amp=fp8", "train.amp"),
    ([], "train.grad_clip=-1", "train.grad_clip"),
    ([], "train.grad_clip=NaN", "train.grad_clip"),
    ([], "train.grad_clip=0", "train.grad_clip"),
    ([], "train.label_smoothing=1.5", "train.label_smoothing"),
    ([], "train.mixup_alpha=-1", "train.mixup_alpha"),
    ([], "train.num_workers=-1", "train.num_workers"),
    ([], "train.grad_checkpointing=maybe", "train.grad_checkpointing"),
    ([], "train.bogus=1", "train.bogus"),
    # early stopping and probes
    ([], "train.early_stopping.metric=val_f2", "train.early_stopping.metric"),
    ([], "train.early_stopping.mode=sideways", "train.early_stopping.mode"),
    ([], "train.early_stopping.mode=max", "train.early_stopping.mode"),  # val_loss: lower is better
    ([], "train.early_stopping.patience=3", "train.early_stopping.patience"),  # early stopping is off
    (["--set", "train.early_stopping.enabled=true"], "train.early_stopping.patience=0",
     "train.early_stopping.patience"),
    ([], "train.probes.every_n_steps=0", "train.probes.every_n_steps"),
    ([], "train.probes.histogram_every_n_steps=-1", "train.probes.histogram_every_n_steps"),
    ([], "train.probes.probes=[\"grad_norm\",\"telepathy\"]", "train.probes.probes"),
    ([], "train.probes.enabled=perhaps", "train.probes.enabled"),
]


def _argv(base: list[str], assignment: str) -> list[str]:
    parts = assignment.split(" --set ")
    return ["train", *base, *[a for p in parts for a in ("--set", p)]]


def test_the_table_covers_every_section_with_more_than_sixty_values():
    sections = {key.split(".")[0] if "." in key else key for _, _, key in BAD}
    assert len(BAD) >= 60
    assert {"name", "data", "model", "optim", "schedule", "train"} <= sections
    assert any(key.startswith("data.options") for *_, key in BAD) and any("augment" in k for *_, k in BAD)


@pytest.mark.parametrize("base, assignment, key", BAD, ids=[f"{i}:{a[:40]}" for i, (_, a, _) in enumerate(BAD)])
def test_bad_values_are_refused_with_the_key_before_any_run_exists(runs_dir, capsys, base, assignment, key):
    assert main(_argv(base, assignment)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line.startswith("error: ") for line in lines), err
    assert key in err, err
    assert not runs_dir.exists() or not any(p.is_dir() for p in runs_dir.iterdir()), "no run folder"
    if (runs_dir / "sigscope.db").exists():
        assert Store(runs_dir / "sigscope.db").list_runs() == []


def test_a_bad_config_file_is_refused_with_every_problem_at_once(runs_dir, tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"train": {"epochs": "many", "batch_size": 0}, "optim": {"lr": float("nan")}}))
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    for key in ("train.epochs", "train.batch_size", "optim.lr"):
        assert key in err
    assert not runs_dir.exists() or not any(p.is_dir() for p in runs_dir.iterdir())


def test_the_job_manager_refuses_a_bad_config_without_storing_a_run(tmp_path):
    from core.jobs import JobManager

    store = Store(tmp_path / "runs" / "sigscope.db")
    jobs = JobManager(store, max_workers=1)
    try:
        bad = RunConfig()
        bad.optim.lr = float("inf")
        bad.train.epochs = "many"
        with pytest.raises(ConfigError) as e:
            jobs.submit(bad)
        assert "optim.lr" in str(e.value) and "train.epochs" in str(e.value)
        assert store.list_runs() == []
    finally:
        jobs.shutdown()


def test_a_choice_that_does_not_apply_says_what_it_applies_to():
    with pytest.raises(ConfigError) as e:
        RunConfig().with_overrides({"optim.momentum": 0.5})
    assert "optim.momentum: it applies only when optim.name == 'sgd' (here optim.name is 'adamw')" in str(e.value)
    assert RunConfig().with_overrides({"optim.name": "sgd", "optim.momentum": 0.5}).optim.momentum == 0.5


def test_unknown_keys_get_a_near_match():
    with pytest.raises(ConfigError, match="did you mean train.epochs"):
        RunConfig().with_overrides({"train.epoch": 3})


def test_changing_the_model_or_source_drops_the_old_ones_family():
    cfg = presets.get("hapt_har_transformer").config
    assert cfg.with_overrides({"model.name": "resnet1d"}).model.hparams == registry.spec("resnet1d").defaults()
    fsdd = cfg.with_overrides({"data.source": "fsdd", "data.features": "mfcc", "data.augment": [],
                               "model.name": "resnet1d"})
    assert "classes" not in fsdd.data.options


# ---- one spec behind the CLI, the docs and the registries -------------------------------------
def test_options_lists_every_key_with_type_default_and_help(capsys):
    assert main(["options", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    keys = {r["key"] for r in rows}
    for e in spec.params(RunConfig()):
        assert e.key in keys
    for name in registry.list_models():
        for h in registry.spec(name).hparams:
            row = next(r for r in rows if r["key"] == f"model.hparams.{h.name}"
                       and f"model.name == {name!r}" in r["when"])
            assert row["default"] == (list(h.default) if isinstance(h.default, tuple) else h.default) and row["help"]
    assert any(r["key"] == "data.augment.rotation.params.max_degrees" for r in rows)
    assert all(r["help"] and r["allowed"] for r in rows)


def test_docs_options_page_is_the_spec(capsys):
    assert main(["options", "--markdown"]) == 0
    generated = capsys.readouterr().out
    on_disk = (ROOT / "docs" / "OPTIONS.md").read_text()
    assert on_disk == generated, "docs/OPTIONS.md is stale: run `python -m core options --markdown > docs/OPTIONS.md`"


def test_no_choice_list_is_written_twice():
    """The forms, the CLI and the profiler read the choices from the spec: none of these files
    spells out the optimizer, precision, normalization, feature or schedule names."""
    lists = ['"adamw", "adam", "sgd"', '"adam", "adamw", "sgd"', '"off", "bf16", "fp16"', '"off", "fp16", "bf16"',
             '"zscore", "robust"', '"raw", "logmel"', '"cosine", "onecycle"', '"basic6", "all12"]']
    for path in ["pages/build.py", "pages/train.py", "dashboard/forms.py", "core/commands/profile.py",
                 "core/train/trainer.py", "core/profile.py", "core/profiling/memory.py"]:
        text = (ROOT / path).read_text()
        for choice_list in lists:
            assert choice_list not in text, f"{path} spells out {choice_list}"


def test_each_zoo_models_defaults_are_its_constructors():
    for name in registry.list_models():
        s = registry.spec(name)
        signature = inspect.signature(s.builder)
        own = {n: p.default for n, p in signature.parameters.items() if n not in registry.DIMS}
        assert s.defaults() == own, name
        assert all(h.help for h in s.hparams), name


def test_a_default_written_twice_that_disagrees_is_refused_at_registration():
    from torch import nn

    class Tiny(nn.Module):
        """Args:
            width: hidden width.
        """

        def __init__(self, in_channels: int, num_classes: int, seq_len: int, width: int = 8) -> None:
            super().__init__()

    with pytest.raises(ValueError, match="the signature owns it"):
        registry.register("tiny_test", registry.ModelSpec("tiny_test", Tiny, "imu", (
            registry.HParam("width", "int", 16, low=1, high=64),)))
    with pytest.raises(ValueError, match="keyword arguments"):
        registry.register("tiny_test", registry.ModelSpec("tiny_test", Tiny, "imu", ()))


def test_every_block_is_reachable_from_a_zoo_model_or_documented_as_not():
    from core.models import blocks

    used: dict[str, set] = {}
    for name in registry.list_models():
        s = registry.spec(name)
        variants = [{}] + [{h.name: c} for h in s.hparams if h.type == "choice" for c in h.options()] + \
                   [{h.name: not h.default} for h in s.hparams if h.type == "bool"]
        for v in variants:
            try:
                model = registry.create(name, s.default_input, 4, **v)
            except ConfigError:
                continue
            for module in model.modules():
                used.setdefault(type(module).__name__, set()).add(name)
    docs = (ROOT / "docs" / "BLOCKS.md").read_text()
    for block in blocks.__all__:
        if block in blocks.NOT_IN_ZOO:
            assert block not in used, f"{block} is used by {used.get(block)}; drop it from NOT_IN_ZOO"
            assert block in docs
        else:
            assert block in used, f"no zoo model offers {block}; give it a home or list it in NOT_IN_ZOO"
            assert block in docs, f"docs/BLOCKS.md does not list {block}"


# ---- presets are data --------------------------------------------------------------------------
def test_presets_are_json_files_validated_by_the_spec_and_listed_by_the_cli(capsys):
    files = sorted(p.stem for p in (ROOT / "presets").glob("*.json"))
    assert sorted(p.name for p in presets.list_presets() if not p.saved) == files
    assert main(["presets", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {p["name"] for p in listed} >= set(files)


def test_a_saved_preset_is_listed_and_trains_from_the_cli(runs_dir, capsys):
    cfg = RunConfig().with_overrides({"train.epochs": 1, "data.options.per_class": 12, "model.hparams.base_channels": 8,
                                      "model.hparams.num_stages": 1, "train.probes.enabled": False})
    saved = presets.save_preset("my_tiny", cfg, title="My tiny run")
    assert saved.saved and (runs_dir / "presets" / "my_tiny.json").is_file()
    assert "my_tiny" in [p.name for p in presets.list_presets()]
    assert presets.get("my_tiny").config == cfg.validated()
    with pytest.raises(ConfigError, match="shipped preset"):
        presets.save_preset("hapt_resnet1d", cfg)
    with pytest.raises(ConfigError, match="preset name"):
        presets.save_preset("../evil", cfg)
    assert main(["train", "--preset", "my_tiny", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "completed"


def test_a_saved_preset_that_no_longer_validates_is_set_aside_with_the_reason(runs_dir):
    folder = runs_dir / "presets"
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text(json.dumps({"title": "Broken", "overrides": {"optim.lr": "nan"}}))
    assert "broken" not in [p.name for p in presets.list_presets()]
    assert "optim.lr" in presets.problems()["broken"]


# ---- resume is explicit -------------------------------------------------------------------------
def _stopped_run(runs_dir, capsys) -> str:
    assert main(["train", "--epochs", "1", "--set", "data.options.per_class=12", "--set", "base_channels=8",
                 "--set", "num_stages=1", "--set", "train.probes.enabled=false", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    Store(runs_dir / "sigscope.db").update_run(run_id, status="cancelled")
    return run_id


def test_resume_takes_more_epochs_and_a_device(runs_dir, capsys):
    run_id = _stopped_run(runs_dir, capsys)
    assert main(["train", "--resume", run_id, "--epochs", "2", "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "completed" and out["epochs_completed"] == 2
    run = Store(runs_dir / "sigscope.db").get_run(run_id)
    assert run["config"]["train"]["epochs"] == 2 and run["config"]["train"]["device"] == "cpu"


def test_resume_refuses_what_a_resumed_run_cannot_change(runs_dir, capsys):
    run_id = _stopped_run(runs_dir, capsys)
    for argv, needle in ((["--set", "train.batch_size=8"], "train.batch_size: cannot change when resuming"),
                         (["--set", "optim.lr=0.1"], "optim.lr: cannot change when resuming"),
                         (["--model", "tcn_dilated"], "--model cannot be combined with --resume"),
                         (["--epochs", "1"], "has already completed 1 epoch")):
        assert main(["train", "--resume", run_id, *argv]) == 2
        assert needle in capsys.readouterr().err
    assert Store(runs_dir / "sigscope.db").get_run(run_id)["status"] == "cancelled", "a refused resume changes nothing"
