"""Named presets: every one is a complete config that loads its bundled data, builds its
model and classifies a batch; the CLI lists them and trains from one with overrides."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch.utils.data import DataLoader

from core import presets
from core.__main__ import build_parser, main
from core.commands.train import build_config
from core.config import RunConfig
from core.data import load
from core.errors import ConfigError
from core.models import registry
from core.store import Store

NAMES = [p.name for p in presets.list_presets()]
# presets whose data is partly made by a speech synthesizer: they load only where it is installed
SYNTHESIZERS = {"tts_voices": "espeak-ng", "flite_voices": "flite"}


def _missing_synthesizer(name: str) -> str | None:
    options = presets.get(name).config.data.options
    return next((program for option, program in SYNTHESIZERS.items()
                 if options.get(option) and shutil.which(program) is None), None)


LOADABLE = [pytest.param(n, marks=pytest.mark.skipif(
    _missing_synthesizer(n) is not None,
    reason=f"this preset's synthetic voices need {_missing_synthesizer(n)} (`make test` installs it as root)"))
    for n in NAMES]


def test_the_issue_presets_exist_with_titles_and_their_tasks():
    assert {"hapt_har_transformer", "hapt_all12_se_convnext", "hapt_resnet1d", "fsdd_audio_resnet_attention",
            "uea_basicmotions", "uea_japanesevowels"} <= set(NAMES)
    assert [p.name for p in presets.list_presets() if not p.saved] == NAMES
    cfg = presets.get("hapt_har_transformer").config
    assert (cfg.data.source, cfg.data.options["classes"], cfg.data.window, cfg.data.stride, cfg.data.split) == \
        ("hapt", "basic6", 128, 64, "subject")
    assert cfg.model.hparams == registry.spec("har_transformer").defaults(), "the HAR Transformer at its defaults"
    assert presets.get("hapt_all12_se_convnext").config.data.options["classes"] == "all12"
    fsdd = presets.get("fsdd_audio_resnet_attention").config
    assert (fsdd.data.source, fsdd.data.split, fsdd.data.features) == ("fsdd", "fixed", "stack4")
    assert {"pitch_shift", "time_stretch", "spec_time_mask", "spec_freq_mask"} <= {a.name for a in fsdd.data.augmentations()}
    assert presets.get("uea_japanesevowels").config.data.options["name"] == "JapaneseVowels"
    assert presets.get("fsdd_audio_resnet_attention").title == "FSDD – audio ResNet+attention"


def test_get_names_the_known_presets_when_asked_for_an_unknown_one():
    with pytest.raises(ConfigError) as e:
        presets.get("hapt_transformer")
    assert "hapt_har_transformer" in str(e.value) and "uea_basicmotions" in str(e.value)


def test_get_hands_out_copies_so_a_caller_cannot_change_a_preset():
    cfg = presets.get("hapt_har_transformer").config
    cfg.train.epochs = 1
    cfg.model.hparams["depth"] = 1
    cfg.data.augment.clear()
    again = presets.get("hapt_har_transformer").config
    assert again.train.epochs == 40 and again.model.hparams["depth"] == 3 and again.data.augment
    assert presets.get("hapt_har_transformer").config == again


@pytest.mark.parametrize("name", NAMES)
def test_preset_is_complete_json_round_trips_and_reads_bundled_data(name):
    preset = presets.get(name)
    cfg = preset.config
    assert RunConfig.from_json(cfg.to_json()) == cfg
    assert cfg.data.path is None and not cfg.data.options.get("full"), "presets run on the bundled sample"
    spec = registry.spec(cfg.model.name)
    assert spec.resolve(cfg.model.hparams) == cfg.model.hparams, \
        "every hyperparameter written out, valid, so the Train page reproduces the preset exactly"
    es = cfg.train.early_stopping
    assert es.mode == ("min" if es.metric.endswith("loss") else "max")
    assert preset.title and preset.description


@pytest.mark.parametrize("name", LOADABLE)
def test_preset_loads_its_data_builds_its_model_and_classifies_a_batch(name):
    cfg = presets.get(name).config.with_overrides({"data.max_examples": 80})
    # a few synthetic voices per engine show they load; the preset's hundreds take minutes to make
    cfg = cfg.with_overrides({f"data.options.{option}": min(3, cfg.data.options[option])
                              for option in SYNTHESIZERS if cfg.data.options.get(option)})
    bundle = load(cfg.data)
    assert len(bundle.train) > 0 and len(bundle.test) > 0
    assert bundle.input_kind == registry.spec(cfg.model.name).input_kind
    model = registry.create(cfg.model.name, tuple(bundle.input_shape), bundle.num_classes, **cfg.model.hparams)
    x, y = next(iter(DataLoader(bundle.train, batch_size=4, shuffle=False)))
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (len(x), bundle.num_classes)
    assert torch.isfinite(logits).all()


# ---- CLI ---------------------------------------------------------------------------------
def test_cli_presets_lists_every_preset_and_json_carries_full_configs(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for p in presets.list_presets():
        assert p.name in out and p.title in out
    assert main(["presets", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in listed] == NAMES
    for item in listed:
        assert RunConfig.from_dict(item["config"]) == presets.get(item["name"]).config


def test_cli_train_preset_applies_set_overrides_on_top():
    args = build_parser().parse_args(["train", "--preset", "hapt_har_transformer", "--set", "train.epochs=3",
                                      "--set", "depth=2", "--set", "data.options.full=true"])
    cfg = build_config(args)
    expected = presets.get("hapt_har_transformer").config.with_overrides(
        {"train.epochs": 3, "model.hparams.depth": 2, "data.options.full": True, "name": "hapt_har_transformer"})
    assert cfg == expected


def test_cli_train_refuses_an_unknown_preset_and_a_preset_with_a_config(capsys, tmp_path):
    assert main(["train", "--preset", "no_such_preset"]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'no_such_preset'" in err and "uea_basicmotions" in err
    (tmp_path / "run.json").write_text(RunConfig().to_json())
    assert main(["train", "--preset", "uea_basicmotions", "--config", str(tmp_path / "run.json")]) == 2
    assert "not both" in capsys.readouterr().err


def test_cli_trains_a_preset_into_the_store(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    code = main(["train", "--preset", "uea_basicmotions", "--set", "train.epochs=1", "--set", "base_channels=8",
                 "--set", "train.probes.enabled=false", "--device", "cpu", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["status"] == "completed"
    run = Store().get_run(out["run_id"])
    stored = RunConfig.from_dict(run["config"])
    assert stored.name == "uea_basicmotions" and stored.model.name == "resnet1d"
    assert stored.model.hparams["base_channels"] == 8 and stored.train.epochs == 1
    assert stored.data.options["name"] == "BasicMotions"
    assert "test_accuracy" in out["test_metrics"]
