"""Train page, "Start from a preset": choosing a preset fills every widget of the form so the
shown (and submitted) run config is exactly the preset's; the fields stay editable; Build's
"Train this model" hand-off still works beside it."""
from __future__ import annotations

import dataclasses

import pytest

from core import presets
from core.config import RunConfig
from core.store import Store
from tests.test_pages import open_page, runs_dir, shown_config  # noqa: F401  (runs_dir is a fixture)
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
    assert shown_config(at).data.source == "hapt", "without a preset the form keeps its own defaults"


@pytest.mark.parametrize("name", LOADABLE)
def test_choosing_a_preset_shows_exactly_its_config(runs_dir, name):
    at = choose(open_page("pages/train.py", timeout=FIRST_READ_TIMEOUT), name)
    shown = shown_config(at)
    assert without_name(shown) == presets.get(name).config
    assert shown.name == name, "the run is named after its preset"
    assert not any("cannot be loaded" in e.value or "refused" in e.value for e in at.error), \
        [e.value for e in at.error]
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
    at.number_input(key="train.epochs").set_value(7).run()
    at.slider(key="train.hp.har_transformer.depth").set_value(2).run()
    at.number_input(key="train.lr").set_value(3e-4).run()
    at.selectbox(key="train.hapt.classes").set_value("all12").run()
    at.slider(key="train.aug.jitter.p").set_value(0.25).run()
    assert not at.exception
    at.run()  # and they survive another rerun
    shown = shown_config(at)
    expected = presets.get("hapt_har_transformer").config.with_overrides(
        {"train.epochs": 7, "model.hparams.depth": 2, "optim.lr": 3e-4, "data.options.classes": "all12",
         "name": "hapt_har_transformer"})
    expected.data.augment[1]["p"] = 0.25  # [scaling, jitter]
    assert shown == expected
    assert at.selectbox(key="train.preset").value == "hapt_har_transformer"


def test_changing_the_source_after_a_preset_leaves_its_data_choices_behind(runs_dir):
    at = choose(open_page("pages/train.py"), "fsdd_audio_resnet_attention")
    preset = presets.get("fsdd_audio_resnet_attention").config
    assert [a["name"] for a in shown_config(at).data.augment] == [a["name"] for a in preset.data.augment]
    at.selectbox(key="train.source").set_value("synthetic_audio").run()
    assert not at.exception
    data = shown_config(at).data
    assert data.source == "synthetic_audio" and data.augment == [] and "full" not in data.options


def test_full_dataset_box_sets_the_option(runs_dir):
    at = choose(open_page("pages/train.py"), "uea_basicmotions")
    at.selectbox(key="train.source").set_value("hapt").run()
    at.checkbox(key="train.hapt.full").check().run()
    assert not at.exception
    assert shown_config(at).data.options.get("full") is True  # loads or says where the full file belongs


def test_synthetic_voice_boxes_show_the_preset_and_set_the_options(runs_dir):
    at = choose(open_page("pages/train.py", timeout=FIRST_READ_TIMEOUT), "fsdd_unseen_speakers")
    preset = presets.get("fsdd_unseen_speakers").config.data.options
    assert at.number_input(key="train.fsdd.tts_voices").value == preset.get("tts_voices", 0)
    assert at.number_input(key="train.fsdd.flite_voices").value == preset.get("flite_voices", 0)
    at.number_input(key="train.fsdd.flite_voices").set_value(150).run()
    at.number_input(key="train.fsdd.tts_voices").set_value(0).run()
    assert not at.exception
    options = shown_config(at).data.options
    assert options["flite_voices"] == 150 and "tts_voices" not in options  # 0 = none, as if never named


def test_build_handoff_still_fills_the_model_next_to_the_preset_picker(runs_dir):
    at = open_page("pages/build.py")
    at.selectbox(key="build.model").set_value("resnet1d").run()
    at.slider(key="build.hp.resnet1d.num_stages").set_value(2).run()
    at.button(key="build.to_train").click().run()
    assert not at.exception
    assert at.selectbox(key="train.preset").value == ""
    cfg = shown_config(at)
    assert cfg.model.name == "resnet1d" and cfg.model.hparams["num_stages"] == 2
    at.switch_page("pages/train.py").run()  # AppTest reruns the page it opened; a browser stays on Train
    assert shown_config(at).model.hparams["num_stages"] == 2
    at = choose(at, "uea_basicmotions")  # a preset chosen afterwards takes over the whole form
    assert without_name(shown_config(at)) == presets.get("uea_basicmotions").config


def _form_script(config_json: str) -> None:
    """AppTest script: the Train form's sections seeded from one config, as a preset seeds them."""
    import streamlit as st

    from core.config import RunConfig
    from core.models import registry
    from dashboard import forms

    cfg = RunConfig.from_json(config_json)
    if "seeded" not in st.session_state:
        st.session_state.update(forms.widget_state(cfg, "f"))
        st.session_state["seeded"] = True
    data = forms.data_section("f", cfg.data)
    summary = forms.data_summary(data.to_dict())
    model, problem = forms.model_section("f", summary.get("input_kind"), summary.get("input_shape"))
    train = forms.train_section("f", registry.spec(model.name).supports_checkpointing, cfg.train)
    optim = forms.optim_section("f", cfg.optim)
    schedule = forms.schedule_section("f", train.epochs, cfg.schedule)
    st.code(RunConfig(name=cfg.name, data=data, model=model, optim=optim, schedule=schedule, train=train).to_json(),
            language="json")


EDITED = {  # a preset as someone might retune it: knobs behind conditional widgets and fields without one
    "sgd_step_no_clip": {"optim.name": "sgd", "optim.momentum": 0.8, "optim.betas": [0.8, 0.99],
                         "schedule.name": "step", "schedule.step_size": 4, "schedule.gamma": 0.3,
                         "train.grad_clip": None, "train.checkpoint_every_epoch": False,
                         "train.early_stopping.enabled": True, "train.early_stopping.metric": "val_loss",
                         "train.early_stopping.mode": "min", "train.probes.every_n_steps": 5,
                         "data.label_mode": "drop_mixed", "data.split_seed": 3, "data.val_from": "examples",
                         "data.augment": [{"name": "jitter", "p": 0.4, "params": {"sigma": 0.2}}]},
    "plateau_all12": {"schedule.name": "plateau", "schedule.plateau_patience": 6, "schedule.plateau_factor": 0.25,
                      "schedule.min_lr": 1e-5, "data.options.classes": "all12", "train.seed": 11,
                      "train.amp": "bf16", "train.label_smoothing": 0.05, "train.mixup_alpha": 0.3,
                      "model.hparams.pool": "mean"},
}


@pytest.mark.parametrize("variant", list(EDITED))
def test_widget_state_and_section_bases_reproduce_a_config_exactly(variant):
    from streamlit.testing.v1 import AppTest

    cfg = presets.get("hapt_har_transformer").config.with_overrides(EDITED[variant])
    at = AppTest.from_function(_form_script, args=(cfg.to_json(),), default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert RunConfig.from_json(at.code[0].value) == cfg
