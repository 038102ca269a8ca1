"""Train page, "Start from a preset": choosing a preset fills every widget of the form so the
shown (and submitted) run config is exactly the preset's; the fields stay editable; a saved
preset joins the list; Build's "Train this model" and Runs' "Edit and re-run" fill the same form."""
from __future__ import annotations

import dataclasses

import pytest

from core import presets
from core.config import RunConfig
from core.models import registry
from core.store import Store
from tests.test_pages import fk, open_page, open_section, runs_dir, set_form, shown_config, widget  # noqa: F401
from tests.test_presets import LOADABLE  # presets that load here (espeak-ng where they need it)

NAMES = [p.name for p in presets.list_presets()]
# A preset with synthetic voices makes them on its first read (hundreds of espeak-ng and flite
# voices: a minute or two on 2 cores, once per test session), inside one script run.
FIRST_READ_TIMEOUT = 400


def choose(at, name: str):
    at.selectbox(key="train.preset").set_value(name).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def without_name(cfg: RunConfig) -> RunConfig:
    return dataclasses.replace(cfg, name="")


def test_picker_starts_at_none_and_lists_every_preset_by_title(runs_dir):
    at = open_page("pages/train.py")
    picker = at.selectbox(key="train.preset")
    assert picker.value == "" and picker.options[0] == "— none —"
    assert picker.options[1:] == [p.title for p in presets.list_presets()]
    assert shown_config(at).data.source == "hapt", "without a preset the form starts on the bundled HAPT sample"


@pytest.mark.parametrize("name", LOADABLE)
def test_choosing_a_preset_shows_exactly_its_config(runs_dir, name):
    at = choose(open_page("pages/train.py", timeout=FIRST_READ_TIMEOUT), name)
    shown = shown_config(at)
    assert without_name(shown) == presets.get(name).config
    assert shown.name == name, "the run is named after its preset"
    assert not at.error, [e.value for e in at.error]
    assert not at.button(key="train.submit").disabled


def test_switching_presets_refills_the_form_and_submitting_stores_the_preset(runs_dir):
    from dashboard.engine import engine

    at = choose(open_page("pages/train.py"), "fsdd_audio_resnet_attention")
    at = choose(at, "uea_japanesevowels")
    expected = presets.get("uea_japanesevowels").config
    assert without_name(shown_config(at)) == expected
    at.button(key="train.submit").click().run()
    assert not at.exception
    runs = Store(runs_dir / "sigscope.db").list_runs()
    assert len(runs) == 1
    stored = RunConfig.from_dict(runs[0]["config"])
    assert without_name(stored) == expected and stored.name == "uea_japanesevowels"
    engine().cancel(runs[0]["id"])
    engine().jobs.wait(runs[0]["id"], timeout=60)


def test_edits_after_choosing_a_preset_stick_and_keep_the_rest(runs_dir):
    at = choose(open_page("pages/train.py"), "hapt_har_transformer")
    set_form(at, "train.epochs", 7)
    set_form(at, "model.hparams.depth", 2, "har_transformer")
    set_form(at, "optim.lr", 3e-4)
    set_form(at, "data.options.classes", "all12", "hapt")
    set_form(at, "data.augment.jitter.p", 0.25, "jitter")
    at.run()  # and they survive another rerun
    shown = shown_config(at)
    expected = presets.get("hapt_har_transformer").config.with_overrides(
        {"train.epochs": 7, "model.hparams.depth": 2, "optim.lr": 3e-4, "data.options.classes": "all12",
         "data.augment.jitter.p": 0.25, "name": "hapt_har_transformer"})
    assert shown == expected
    assert at.selectbox(key="train.preset").value == "hapt_har_transformer"


def test_changing_the_source_after_a_preset_leaves_its_data_choices_behind(runs_dir):
    at = choose(open_page("pages/train.py"), "fsdd_audio_resnet_attention")
    preset = presets.get("fsdd_audio_resnet_attention").config
    assert [a["name"] for a in shown_config(at).data.augment] == [a["name"] for a in preset.data.augment]
    set_form(at, "data.source", "synthetic_audio")
    data = shown_config(at).data
    assert data.source == "synthetic_audio" and "full" not in data.options
    assert {a["name"] for a in data.augment} <= {"noise", "time_shift", "time_stretch", "pitch_shift", "speed",
                                                 "rolloff", "spec_time_mask", "spec_freq_mask"}


def test_full_dataset_toggle_sets_the_option(runs_dir):
    at = choose(open_page("pages/train.py"), "uea_basicmotions")
    set_form(at, "data.source", "hapt")
    set_form(at, "data.options.full", True, "hapt")
    assert shown_config(at).data.options.get("full") is True  # loads or says where the full file belongs


def test_synthetic_voice_boxes_show_the_preset_and_set_the_options(runs_dir):
    at = choose(open_page("pages/train.py", timeout=FIRST_READ_TIMEOUT), "fsdd_unseen_speakers")
    preset = presets.get("fsdd_unseen_speakers").config.data.options
    assert widget(at, fk("data.options.tts_voices", "fsdd")).value == preset["tts_voices"]
    assert widget(at, fk("data.options.flite_voices", "fsdd")).value == preset["flite_voices"]
    set_form(at, "data.options.flite_voices", 150, "fsdd")
    set_form(at, "data.options.tts_voices", 0, "fsdd")
    options = shown_config(at).data.options
    assert options["flite_voices"] == 150 and options["tts_voices"] == 0


def test_a_saved_preset_joins_the_list_and_fills_the_form(runs_dir):
    at = choose(open_page("pages/train.py"), "hapt_resnet1d")
    set_form(at, "train.epochs", 4)
    open_section(at, "Run config")
    at.text_input(key="train.save.name").set_value("my_hapt").run()
    at.text_input(key="train.save.title").set_value("My HAPT ResNet").run()
    at.button(key="train.save.button").click().run()
    assert not at.exception
    assert any("Saved preset" in s.value for s in at.success)
    saved = presets.get("my_hapt")
    assert saved.saved and saved.config.train.epochs == 4 and saved.title == "My HAPT ResNet"
    fresh = open_page("pages/train.py")
    assert "My HAPT ResNet (saved)" in fresh.selectbox(key="train.preset").options
    fresh = choose(fresh, "my_hapt")
    assert without_name(shown_config(fresh)) == without_name(saved.config)


# ---- hand-offs into the form ----------------------------------------------------------------------
@pytest.mark.parametrize("model, source, shape_len", [("resnet1d", "hapt", 2), ("audio_resnet_attention", "fsdd", 3)])
def test_build_hands_model_knobs_and_a_compatible_source_to_train(runs_dir, model, source, shape_len):
    at = open_page("pages/build.py")
    at.selectbox(key="build.model").set_value(model).run()
    knob = next(h for h in registry.spec(model).hparams if h.type == "choice" and len(h.options()) > 1)
    other = next(c for c in knob.options() if c != knob.default)
    set_form(at, f"model.hparams.{knob.name}", other, model, prefix="build")
    assert not at.error, [e.value for e in at.error]
    at.button(key="build.to_train").click().run()
    assert not at.exception
    assert at.selectbox(key="train.preset").value == ""
    assert any(f"From Build: **{model}**" in i.value for i in at.info)
    cfg = shown_config(at)
    assert cfg.model.name == model and cfg.model.hparams[knob.name] == other
    assert cfg.data.source == source and not at.button(key="train.submit").disabled
    at.switch_page("pages/train.py").run()  # AppTest reruns the page it opened; a browser stays on Train
    assert shown_config(at).model.hparams[knob.name] == other
    at = choose(at, "uea_basicmotions")  # a preset chosen afterwards takes over the whole form
    assert without_name(shown_config(at)) == presets.get("uea_basicmotions").config


def test_build_says_so_when_a_custom_shape_cannot_go_to_train(runs_dir):
    at = open_page("pages/build.py")
    at.selectbox(key="build.model").set_value("tcn_dilated").run()
    at.selectbox(key="build.setup.tcn_dilated").set_value("Custom input shape").run()
    at.button(key="build.to_train").click().run()
    assert not at.exception
    note = next(i.value for i in at.info if "From Build" in i.value)
    assert "custom input" in note and "Train needs real data" in note
    assert shown_config(at).model.name == "tcn_dilated"


@pytest.mark.parametrize("model", registry.list_models())
def test_build_shows_a_cost_card_for_every_model_at_its_defaults(runs_dir, model):
    at = open_page("pages/build.py")
    at.selectbox(key="build.model").set_value(model).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    labels = {m.label for m in at.metric}
    assert {"Parameters", "FLOPs / batch", "Training memory"} <= labels


def test_edit_and_rerun_fills_train_with_the_stored_config(runs_dir):
    store = Store(runs_dir / "sigscope.db")
    stored = presets.get("hapt_resnet1d").config.with_overrides({"train.epochs": 9, "optim.lr": 5e-4,
                                                                  "name": "an old run"})
    run_id = store.create_run(stored.to_dict(), status="completed")
    at = open_page("pages/runs.py", section="One run")
    at.selectbox(key="runs.focus").set_value(run_id).run()
    at.button(key="runs.rerun").click().run()
    assert not at.exception
    assert any(f"From run **{run_id}**" in i.value for i in at.info)
    assert shown_config(at) == stored
