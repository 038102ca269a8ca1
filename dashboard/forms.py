"""The Train page's form, one function per RunConfig section. Each draws its widgets under
a key prefix (session-scoped: two browser sessions never share a choice) and returns the
config section it describes, so the page only composes them:

    data = data_section("train")            # -> DataConfig
    optim = optim_section("train")          # -> OptimConfig

A named preset (core.presets) fills the form: `preset_section` draws the picker and, when a
preset is chosen, writes `widget_state(preset.config, key)` into st.session_state under the
same keys the sections use, so every widget shows the preset's value and stays editable.
Fields a section has no widget for (e.g. augmentation params, test_takes, betas) come from
the section's `base` (the chosen preset's), so the form reproduces a preset exactly.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import streamlit as st

from core.config import (AugmentConfig, DataConfig, ModelConfig, OptimConfig,
                         RunConfig, ScheduleConfig, TrainConfig)
from core.errors import ConfigError, SigscopeError
from core.models import registry
from core.presets import Preset, list_presets
from core.presets import get as get_preset
from dashboard.widgets import hparam_form

SPLIT_HELP = {"stratified": "random, keeping class proportions", "random": "random examples",
              "subject": "whole subjects/speakers held out (no person in two splits)",
              "fixed": "the source's standard split (e.g. FSDD takes 0-4 as test)"}
FEATURE_HELP = {"raw": "the waveform itself (waveform models)", "logmel": "log-mel bands as channels (IMU-style models)",
                "mfcc": "MFCCs as channels (IMU-style models)",
                "mfcc_deltas": "MFCCs with their Δ and ΔΔ as channels (IMU-style models)",
                "stack4": "log-mel, MFCC, Δ, ΔΔ planes (spectrogram models)"}
SCHEDULE_HELP = {"none": "constant learning rate (after an optional warm-up)",
                 "cosine": "cosine from lr down to min lr at the last step",
                 "onecycle": "rise to lr then anneal (one-cycle)",
                 "step": "multiply by gamma every step size epochs",
                 "warmup_exp_cosine": "seed schedule: warm-up, ×0.96 per epoch, then cosine (scaled to the epochs)",
                 "plateau": "halve when the validation loss stops improving (depends on the run)"}
NO_PRESET = ""
# source options the form draws a widget for; any other option is carried over from `base`
FORM_OPTIONS = ("classes", "n_classes", "per_class", "name", "full", "tts_voices", "flite_voices")


@st.cache_data(show_spinner=False)
def sources() -> list[dict]:
    from core.data import list_sources
    return list_sources()


@st.cache_data(show_spinner=False)
def augmentations() -> list[dict]:
    from core.data import list_augmentations
    return list_augmentations()


READING = "Reading the data… (a first read computes and caches features, and any synthetic voices: up to a minute)"


@st.cache_data(show_spinner=READING, max_entries=32)
def data_summary(data: dict) -> dict:
    """Load the data once per data config: what the model will see, or the error to show."""
    from core.data import load

    try:
        bundle = load(DataConfig.from_dict(data))
    except SigscopeError as e:
        return {"error": str(e)}
    return {"input_kind": bundle.input_kind, "input_shape": tuple(bundle.input_shape),
            "class_names": list(bundle.class_names), "n_train": len(bundle.train), "n_val": len(bundle.val),
            "n_test": len(bundle.test), "sample_rate": bundle.sample_rate}


@st.cache_data(show_spinner=False, max_entries=64)
def lr_curve_cached(config_json: str, steps_per_epoch: int) -> list[float]:
    from core.train import lr_curve
    return lr_curve(RunConfig.from_json(config_json), steps_per_epoch)


def data_section(key: str, base: DataConfig | None = None) -> DataConfig:
    """Source, its options, windowing or audio features, normalization, split, augmentation.
    base: a config (a preset's) whose fields without a widget are kept when its source is chosen."""
    specs = {s["name"]: s for s in sources()}
    names = list(specs)
    source = st.selectbox("Source", names, index=names.index("hapt") if "hapt" in names else 0,
                          key=f"{key}.source", format_func=lambda n: f"{n} ({specs[n]['signal']})")
    spec = specs[source]
    st.caption(f"{spec['description']}. Default data: {spec['default_data']}.")
    path = st.text_input("Path (optional)", "", key=f"{key}.{source}.path",
                         placeholder=spec["default_data"], help="A file or folder; empty = the source's default data")
    options: dict[str, Any] = {}
    c1, c2, c3 = st.columns(3)
    if source == "hapt":
        options["classes"] = c1.selectbox("Classes", ["basic6", "all12"], key=f"{key}.hapt.classes",
                                          help="six activities, or all twelve with the postural transitions")
    if source.startswith("synthetic"):
        options["n_classes"] = int(c1.number_input("Classes", 2, 20, 4, key=f"{key}.{source}.n_classes"))
        options["per_class"] = int(c2.number_input("Examples per class", 10, 5000, 150, key=f"{key}.{source}.per_class"))
    if source == "uea":
        from core.data.uea import OFFLINE
        options["name"] = c1.selectbox("Dataset", list(OFFLINE), key=f"{key}.uea.name",
                                       help="UEA/UCR sets aeon ships offline (ignored when a path is given)")
    if source == "fsdd":  # synthetic speakers for the training split only (core.data.tts)
        for column, option, label, most in ((c1, "tts_voices", "Synthetic voices (espeak-ng)", 630),
                                            (c2, "flite_voices", "Synthetic voices (flite)", 2000)):
            voices = int(column.number_input(label, 0, most, 0, step=50, key=f"{key}.fsdd.{option}",
                                             help=spec["options"][option]))
            if voices:  # 0 = none: the option is left out, as in a config that never named it
                options[option] = voices
    if "full" in spec["options"] and st.checkbox("Full dataset", False, key=f"{key}.{source}.full",
                                                 help=spec["options"]["full"]):
        options["full"] = True
    kw: dict[str, Any] = {}
    if spec["signal"] == "imu":
        kw["window"] = int(c2.number_input("Window (samples)", 8, 4096, 128, key=f"{key}.window"))
        kw["stride"] = int(c3.number_input("Stride (samples)", 1, 4096, 64, key=f"{key}.stride"))
    else:
        feats = list(FEATURE_HELP)  # stack4 first-choice: the zoo's audio model takes spectrograms
        kw["features"] = c1.selectbox("Features", feats, index=feats.index("stack4"), key=f"{key}.features",
                                      format_func=lambda f: f"{f}: {FEATURE_HELP[f]}")
        kw["sample_rate"] = int(c2.number_input("Sample rate (Hz)", 1000, 48000, 8000, step=1000, key=f"{key}.sr"))
        kw["clip_seconds"] = float(c3.number_input("Clip (s)", 0.1, 10.0, 1.0, step=0.1, key=f"{key}.clip"))
        if kw["features"] != "raw":
            m1, m2, m3 = st.columns(3)
            kw["n_mels"] = int(m1.number_input("Mel bands", 2, 256, 40, key=f"{key}.n_mels"))
            kw["n_fft"] = int(m2.number_input("FFT size", 16, 8192, 256, key=f"{key}.n_fft"))
            kw["hop_length"] = int(m3.number_input("Hop (samples)", 1, 4096, 64, key=f"{key}.hop"))
    s1, s2, s3, s4 = st.columns(4)
    split_names = list(SPLIT_HELP)
    split = s1.selectbox("Split", split_names, index=split_names.index("subject" if source == "hapt" else "stratified"),
                         key=f"{key}.split", help="; ".join(f"{k}: {v}" for k, v in SPLIT_HELP.items()))
    val_fraction = s2.slider("Validation share", 0.0, 0.5, 0.15, 0.05, key=f"{key}.val")
    test_fraction = s3.slider("Test share", 0.0, 0.5, 0.2, 0.05, key=f"{key}.test")
    normalization = s4.selectbox("Normalization", ["zscore", "robust", "per_example", "per_utterance", "none"],
                                 key=f"{key}.norm",
                                 help="zscore/robust: per channel, fitted on the training split only; per_example: each "
                                      "example by its own statistics; per_utterance (audio): the same over its voiced "
                                      "frames only, so padding and silence do not set them")
    fitting = [a for a in augmentations() if spec["signal"] in a["signals"]]
    chosen = st.multiselect("Augmentation (training batches only)", [a["name"] for a in fitting], key=f"{key}.{source}.aug",
                            help="\n".join(f"- **{a['name']}**: {a['help']}" for a in fitting))
    augment = []
    if chosen:
        cols = st.columns(min(4, len(chosen)))
        for i, name in enumerate(chosen):
            p = cols[i % len(cols)].slider(f"p({name})", 0.0, 1.0, 0.5, 0.05, key=f"{key}.aug.{name}.p")
            augment.append(AugmentConfig(name=name, p=p).to_dict())
    chosen = dict(source=source, path=path.strip() or None, options=options, split=split,
                  val_fraction=val_fraction, test_fraction=test_fraction, normalization=normalization,
                  augment=augment, **kw)
    if base is None or base.source != source:
        return DataConfig(**chosen)
    chosen["options"] = {**{k: v for k, v in base.options.items() if k not in FORM_OPTIONS}, **options}
    params = {a.name: a.params for a in base.augmentations()}
    chosen["augment"] = [{**a, "params": dict(params.get(a["name"], {}))} for a in augment]
    return dataclasses.replace(base, **chosen)


def model_section(key: str, input_kind: str | None, input_shape: tuple | None,
                  handoff: dict | None = None) -> tuple[ModelConfig, str | None]:
    """Model choice (those that take the data's input kind) and its hyperparameter widgets
    generated from the registry spec. Returns (ModelConfig, problem or None): a combination
    the spec refuses comes back with the reason, so the form can refuse it. handoff: {name, hparams}
    to start from (Build's "Train this model")."""
    names = [n for n in registry.list_models() if input_kind is None or registry.spec(n).input_kind == input_kind]
    if not names:
        return ModelConfig(), f"no model in the zoo takes {input_kind} input"
    handoff = handoff or {}
    wanted = handoff.get("name") if handoff.get("name") in names else ("resnet1d" if "resnet1d" in names else names[0])
    name = st.selectbox("Model", names, index=names.index(wanted), key=f"{key}.model",
                        help="only models that take this data's input kind are listed")
    spec = registry.spec(name)
    st.caption(spec.description)
    values = handoff.get("hparams") if handoff.get("name") == name else None
    hparams = hparam_form(spec, f"{key}.hp", values=values, columns=3)
    try:
        resolved = spec.resolve(hparams, input_shape)
    except ConfigError as e:
        return ModelConfig(name=name, hparams=hparams), str(e)
    return ModelConfig(name=name, hparams=resolved), None


def optim_section(key: str, base: OptimConfig | None = None) -> OptimConfig:
    """Optimizer, learning rate, weight decay (momentum for SGD); other fields from `base`."""
    c1, c2, c3, c4 = st.columns(4)
    name = c1.selectbox("Optimizer", ["adamw", "adam", "sgd"], key=f"{key}.opt")
    lr = c2.number_input("Learning rate", 1e-6, 10.0, 1e-3, format="%.1e", key=f"{key}.lr")
    wd = c3.number_input("Weight decay", 0.0, 1.0, 1e-2, format="%.1e", key=f"{key}.wd")
    base = base or OptimConfig()
    momentum = base.momentum
    if name == "sgd":
        momentum = c4.slider("Momentum", 0.0, 0.99, 0.9, 0.01, key=f"{key}.momentum")
    return dataclasses.replace(base, name=name, lr=float(lr), weight_decay=float(wd), momentum=float(momentum))


def schedule_section(key: str, epochs: int, base: ScheduleConfig | None = None) -> ScheduleConfig:
    """Schedule and the knobs of the chosen one; fields it has no widget for come from `base`."""
    c1, c2, c3, c4 = st.columns(4)
    names = list(SCHEDULE_HELP)
    name = c1.selectbox("Schedule", names, index=names.index("cosine"), key=f"{key}.sched",
                        format_func=lambda n: n, help="; ".join(f"{k}: {v}" for k, v in SCHEDULE_HELP.items()))
    cfg = dataclasses.replace(base, name=name) if base is not None else ScheduleConfig(name=name)
    if name != "plateau":
        cfg.warmup_epochs = float(c2.number_input("Warm-up epochs", 0.0, float(max(1, epochs)), 0.0, step=0.5,
                                                  key=f"{key}.warmup",
                                                  help="0 = none (warmup_exp_cosine: 0 = its scaled 15/120)"))
    if name == "step":
        cfg.step_size = int(c3.number_input("Step size (epochs)", 1, 1000, max(1, epochs // 3), key=f"{key}.step_size"))
        cfg.gamma = float(c4.slider("Gamma", 0.05, 1.0, 0.5, 0.05, key=f"{key}.gamma"))
    if name in ("cosine", "warmup_exp_cosine", "plateau"):
        cfg.min_lr = float(c3.number_input("Min lr", 0.0, 1.0, 1e-6, format="%.1e", key=f"{key}.min_lr"))
    if name == "plateau":
        cfg.plateau_patience = int(c2.number_input("Patience (epochs)", 1, 100, 3, key=f"{key}.pl_patience"))
        cfg.plateau_factor = float(c4.slider("Factor", 0.05, 0.95, 0.5, 0.05, key=f"{key}.pl_factor"))
    st.caption(SCHEDULE_HELP[name])
    return cfg


def train_section(key: str, supports_checkpointing: bool, base: TrainConfig | None = None) -> TrainConfig:
    """Epochs, batch, seed, device, precision, clipping, early stopping and probes; fields
    without a widget (num_workers, checkpoint_every_epoch) come from `base`."""
    import torch

    c1, c2, c3, c4 = st.columns(4)
    epochs = int(c1.number_input("Epochs", 1, 1000, 5, key=f"{key}.epochs"))
    batch = int(c2.number_input("Batch size", 1, 4096, 64, key=f"{key}.batch"))
    seed = int(c3.number_input("Seed", 0, 2**31 - 1, 0, key=f"{key}.seed"))
    devices = ["auto", "cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    device = c4.selectbox("Device", devices, key=f"{key}.device", help="auto = the job's GPU, else cpu")
    d1, d2, d3, d4 = st.columns(4)
    amp = d1.selectbox("Mixed precision", ["off", "bf16", "fp16"], key=f"{key}.amp",
                       help="fp16 needs a CUDA GPU; bf16 also works on CPU")
    clip_on = d2.toggle("Clip gradients", True, key=f"{key}.clip_on")
    clip = float(d3.number_input("Max grad norm", 0.01, 1000.0, 1.0, key=f"{key}.grad_clip", disabled=not clip_on))
    smoothing = float(d4.slider("Label smoothing", 0.0, 0.3, 0.0, 0.05, key=f"{key}.smoothing"))
    g1, g2 = st.columns([1, 3])
    mixup = float(g2.slider("Mixup α", 0.0, 1.0, 0.0, 0.1, key=f"{key}.mixup",
                            help="blend pairs of training examples and their labels with a Beta(α, α) weight; "
                                 "0 = off (0.2-0.4 is usual)"))
    checkpointing = g1.toggle("Gradient checkpointing", False, key=f"{key}.gc", disabled=not supports_checkpointing,
                              help="recompute block activations in backward: less memory, more compute"
                              + ("" if supports_checkpointing else " (this model does not support it)"))
    e1, e2, e3 = st.columns(3)
    es_on = e1.toggle("Early stopping", False, key=f"{key}.es")
    metric = e2.selectbox("Watch", ["val_loss", "val_accuracy", "val_macro_f1"], key=f"{key}.es_metric",
                          disabled=not es_on, help="also decides which checkpoint is 'best'")
    patience = int(e3.number_input("Patience (epochs)", 1, 100, 5, key=f"{key}.es_patience", disabled=not es_on))
    base = base or TrainConfig()
    early = dataclasses.replace(base.early_stopping, enabled=es_on, metric=metric,
                                mode="min" if metric.endswith("loss") else "max", patience=patience)
    p1, p2, p3 = st.columns([1, 1, 2])
    probes_on = p1.toggle("Live probes", True, key=f"{key}.probes_on",
                          help="per-layer gradient norms, dead units, activation stats, histograms")
    every = int(p2.number_input("Probe every N steps", 1, 10000, 10, key=f"{key}.probe_every", disabled=not probes_on))
    hist_every = int(p2.number_input("Histograms every N steps", 0, 100000, 50, key=f"{key}.hist_every",
                                     disabled=not probes_on, help="0 = no histograms"))
    from core.train import PROBES
    chosen = p3.multiselect("Probes", list(PROBES), default=list(PROBES), key=f"{key}.probes", disabled=not probes_on)
    probes = dataclasses.replace(base.probes, enabled=probes_on and bool(chosen), every_n_steps=every,
                                 histogram_every_n_steps=hist_every, probes=list(chosen))
    return dataclasses.replace(base, epochs=epochs, batch_size=batch, seed=seed, device=device, amp=amp,
                               grad_checkpointing=checkpointing and supports_checkpointing,
                               grad_clip=clip if clip_on else None, label_smoothing=smoothing, mixup_alpha=mixup,
                               early_stopping=early, probes=probes)


# ---- presets ---------------------------------------------------------------------------------
def widget_state(config: RunConfig, key: str) -> dict[str, Any]:
    """Session-state values that make every widget of the sections above show `config`
    (only the widgets that config's choices draw: e.g. momentum only for SGD)."""
    d, m, o, s, t = config.data, config.model, config.optim, config.schedule, config.train
    source = d.source
    out: dict[str, Any] = {f"{key}.source": source, f"{key}.{source}.path": d.path or ""}
    if source == "hapt":
        out[f"{key}.hapt.classes"] = d.options.get("classes", "basic6")
    if source.startswith("synthetic"):
        out[f"{key}.{source}.n_classes"] = int(d.options.get("n_classes", 4))
        out[f"{key}.{source}.per_class"] = int(d.options.get("per_class", 150))
    if source == "uea":
        out[f"{key}.uea.name"] = d.options.get("name", "BasicMotions")
    if source == "fsdd":
        out.update({f"{key}.fsdd.{option}": int(d.options.get(option, 0)) for option in ("tts_voices", "flite_voices")})
    signal = next((x["signal"] for x in sources() if x["name"] == source), "imu")
    if "full" in next((x["options"] for x in sources() if x["name"] == source), {}):
        out[f"{key}.{source}.full"] = bool(d.options.get("full", False))
    if signal == "imu":
        out.update({f"{key}.window": int(d.window), f"{key}.stride": int(d.stride)})
    else:
        out.update({f"{key}.features": d.features, f"{key}.sr": int(d.sample_rate), f"{key}.clip": float(d.clip_seconds)})
        if d.features != "raw":
            out.update({f"{key}.n_mels": int(d.n_mels), f"{key}.n_fft": int(d.n_fft), f"{key}.hop": int(d.hop_length)})
    out.update({f"{key}.split": d.split, f"{key}.val": float(d.val_fraction), f"{key}.test": float(d.test_fraction),
                f"{key}.norm": d.normalization, f"{key}.{source}.aug": [a.name for a in d.augmentations()]})
    out.update({f"{key}.aug.{a.name}.p": float(a.p) for a in d.augmentations()})

    out[f"{key}.model"] = m.name
    spec = registry.spec(m.name)
    hparams = spec.resolve(m.hparams)  # the widgets show every knob, defaults included
    out.update({f"{key}.hp.{m.name}.{name}": value for name, value in hparams.items()})

    es, probes = t.early_stopping, t.probes
    out.update({f"{key}.epochs": int(t.epochs), f"{key}.batch": int(t.batch_size), f"{key}.seed": int(t.seed),
                f"{key}.device": t.device, f"{key}.amp": t.amp, f"{key}.clip_on": t.grad_clip is not None,
                f"{key}.smoothing": float(t.label_smoothing), f"{key}.mixup": float(t.mixup_alpha),
                f"{key}.gc": bool(t.grad_checkpointing),
                f"{key}.es": bool(es.enabled), f"{key}.es_metric": es.metric, f"{key}.es_patience": int(es.patience),
                f"{key}.probes_on": bool(probes.enabled), f"{key}.probe_every": int(probes.every_n_steps),
                f"{key}.hist_every": int(probes.histogram_every_n_steps), f"{key}.probes": list(probes.probes)})
    if t.grad_clip is not None:
        out[f"{key}.grad_clip"] = float(t.grad_clip)

    out.update({f"{key}.opt": o.name, f"{key}.lr": float(o.lr), f"{key}.wd": float(o.weight_decay)})
    if o.name == "sgd":
        out[f"{key}.momentum"] = float(o.momentum)
    out[f"{key}.sched"] = s.name
    if s.name != "plateau":
        out[f"{key}.warmup"] = float(s.warmup_epochs)
    if s.name == "step":
        out.update({f"{key}.step_size": int(s.step_size), f"{key}.gamma": float(s.gamma)})
    if s.name in ("cosine", "warmup_exp_cosine", "plateau"):
        out[f"{key}.min_lr"] = float(s.min_lr)
    if s.name == "plateau":
        out.update({f"{key}.pl_patience": int(s.plateau_patience), f"{key}.pl_factor": float(s.plateau_factor)})
    return out


def _apply_preset(key: str) -> None:
    """on_change of the preset picker: fill every widget of the form from the preset."""
    name = st.session_state.get(f"{key}.preset", NO_PRESET)
    if name == NO_PRESET:
        return  # back to "none": the widgets keep what they show
    preset = get_preset(name)
    st.session_state.update(widget_state(preset.config, key))
    st.session_state[f"{key}.name"] = preset.name


def preset_section(key: str) -> Preset | None:
    """"Start from a preset": the picker; choosing one fills the whole form (still editable).
    Returns the chosen preset (its config is the `base` of the sections), or None."""
    presets = {p.name: p for p in list_presets()}
    name = st.selectbox("Start from a preset", [NO_PRESET, *presets], key=f"{key}.preset",
                        format_func=lambda n: "— none —" if n == NO_PRESET else presets[n].title,
                        on_change=_apply_preset, args=(key,),
                        help="configs known to train well on each dataset (`python -m core presets`); "
                             "choosing one fills every field below, which you can then change")
    if name == NO_PRESET:
        return None
    preset = presets[name]
    st.caption(f"{preset.description} Runs on the bundled sample; tick **Full dataset** for all of it. "
               f"CLI: `python -m core train --preset {preset.name}`")
    return preset
