"""The accuracy protocols: what each measures, the preset it starts from, the overrides it
fixes, its folds and its bar, and the run configs they make (bench/accuracy.py)."""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from core.config import RunConfig
from core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "docs" / "results"
RESULTS_MD = ROOT / "docs" / "RESULTS.md"
DEFAULT_RUNS_DIR = ROOT / "runs" / "accuracy"
SHARED_DATA = ROOT / ".." / "shared" / "data"
COMMAND = ".venv/bin/python bench/accuracy.py"
NOTES_START, NOTES_END = "<!-- notes -->", "<!-- /notes -->"
NOTES_PLACEHOLDER = ("_Hand-written discussion goes here (kept when the file is regenerated): why the random-window "
                     "split scores higher than the subject split, which classes are confused and why, what closed "
                     "the leave-one-speaker-out gap._")

HAPT_TEST_SUBJECTS = [str(s) for s in range(20, 26)]
HAPT_VAL_SUBJECTS = ["17", "18", "19"]
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "yweweler")


# ---------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class Protocol:
    """One measurement: a preset, the overrides the protocol fixes, and the bar to reach."""

    name: str
    title: str  # what it measures, one line
    data: str  # the data, for the table
    split: str  # the split, for the table
    preset: str  # core.presets name the config starts from
    overrides: dict  # dotted RunConfig keys fixed by the protocol (applied after the preset)
    target: float | None  # test accuracy to reach (mean over folds); None = reported only
    needs: tuple = ()  # paths under ../shared/data the full protocol reads
    folds: tuple = ()  # ((label, overrides), ...): one run per fold; empty = one run
    quick: dict | None = None  # overrides for --quick on bundled data; None = not in the quick subset
    quick_target: float | None = None  # the lower bar --quick checks
    quick_split: str = ""  # the split of the quick form, for the table
    model_selectable: bool = False  # --model picks its preset / zoo model
    note: str = ""

    def command(self, quick: bool = False, epochs: int | None = None, model: str | None = None,
                sets: list[str] | tuple = (), seeds: int = 1, adapt_bn: bool = False) -> str:
        """The exact command line that reproduces this protocol's result."""
        parts = [COMMAND, "--only", self.name]
        if quick:
            parts.append("--quick")
        if epochs is not None:
            parts += ["--epochs", str(epochs)]
        if model and self.model_selectable:
            parts += ["--model", model]
        for pair in sets:
            parts += ["--set", shlex.quote(pair)]
        if seeds > 1:
            parts += ["--seeds", str(seeds)]
        if adapt_bn:
            parts.append("--adapt-bn")
        return " ".join(parts)


def _hapt_subject(classes: str) -> dict:
    return {"data.source": "hapt", "data.options.full": True, "data.options.classes": classes,
            "data.window": 128, "data.stride": 64, "data.label_mode": "majority", "data.split": "subject",
            "data.test_groups": HAPT_TEST_SUBJECTS, "data.val_groups": HAPT_VAL_SUBJECTS}


# --quick: the presets' models as they are, on the bundled samples, for a few epochs with no
# warm-up (FSDD also without augmentation, whose on-the-fly featurization is slow). Bars are
# set well below what was measured on a shared 2-core AMD EPYC (torch 2.13 CPU, 2 threads),
# and well above chance:
#   hapt6_subject  0.80 test accuracy (6 classes, chance 0.17) -> bar 0.60
#   fsdd_fixed     0.82 (10 classes, chance 0.10)              -> bar 0.50
#   uea_basicmotions 0.85 (4 classes, chance 0.25)             -> bar 0.50
# (about 5 CPU-minutes in all, 8 min wall on a machine shared with other jobs.)
# The bundled HAPT sample holds subjects 1-4; subject 4 is an outlier (about 0.45 when it is
# the test subject after 3 epochs, 0.80 for subject 3), so subject 3 is the quick test subject.
_HAPT_QUICK = {"data.options.full": False, "data.test_groups": ["3"], "data.val_groups": ["4"],
               "train.epochs": 3, "schedule.warmup_epochs": 0.0}
_HAPT_FILE = ("hapt/hapt_subjects01-25.csv.gz",)
_HAPT_SPLIT = "subject: test 20-25, val 17-19, train 1-16"


def _loso_folds() -> tuple:
    return tuple((speaker, {"data.split": "subject", "data.test_groups": [speaker]}) for speaker in FSDD_SPEAKERS)


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in [
    Protocol("hapt6_subject", "HAPT 6 activities, unseen subjects, har_transformer at its preset",
             "HAPT acc+gyro 50 Hz, 6 activities, 2.56 s windows 50 % overlap", _HAPT_SPLIT,
             "hapt_har_transformer", _hapt_subject("basic6"), 0.95, _HAPT_FILE,
             quick=_HAPT_QUICK, quick_target=0.6, quick_split="subject: test 3, val 4, train 1-2"),
    Protocol("hapt6_subject_best", "HAPT 6 activities, unseen subjects, the best zoo model (--model)",
             "HAPT acc+gyro 50 Hz, 6 activities, 2.56 s windows 50 % overlap", _HAPT_SPLIT,
             "hapt_resnet1d", _hapt_subject("basic6"), 0.975, _HAPT_FILE, model_selectable=True),
    Protocol("hapt12_subject", "HAPT all 12 classes with the postural transitions, unseen subjects",
             "HAPT acc+gyro 50 Hz, 12 classes, 2.56 s windows 50 % overlap", _HAPT_SPLIT,
             "hapt_resnet1d", _hapt_subject("all12"), 0.93, _HAPT_FILE),
    Protocol("hapt6_random", "HAPT 6 activities, random windows (a subject's windows in train and test)",
             "HAPT acc+gyro 50 Hz, 6 activities, 2.56 s windows 50 % overlap",
             "random windows: test 20 %, val 15 %", "hapt_har_transformer",
             {**{k: v for k, v in _hapt_subject("basic6").items() if not k.endswith("_groups")},
              "data.split": "random", "data.val_fraction": 0.15, "data.test_fraction": 0.2},
             None, _HAPT_FILE, note="reported next to hapt6_subject: overlapping windows of one recording "
                                    "land on both sides of a random split"),
    Protocol("fsdd_fixed", "FSDD spoken digits, standard split", "FSDD 8 kHz, 10 digits, 5 speakers",
             "fixed: takes 0-4 of every speaker/digit are test", "fsdd_resnet1d_mfcc",
             {"data.source": "fsdd", "data.options.full": True, "data.split": "fixed"}, 0.99, ("fsdd/recordings",),
             quick={"data.options.full": False, "train.epochs": 20, "schedule.warmup_epochs": 0.0, "data.augment": []},
             quick_target=0.5, quick_split="fixed: takes 0-1 test (the bundled sample has takes 0-1, 5-8)"),
    Protocol("fsdd_loso", "FSDD, leave one speaker out (5 folds, mean)", "FSDD 8 kHz, 10 digits, 5 speakers",
             "subject: one speaker test per fold, the other 4 train (+ 300 espeak-ng and 400 flite voices)", "fsdd_unseen_speakers",
             {"data.source": "fsdd", "data.options.full": True, "data.split": "subject"}, 0.92, ("fsdd/recordings",),
             folds=_loso_folds(),
             note="no validation speaker: the 4 others all train and the last epoch is tested, unless the "
                  "preset needs validation (plateau schedule or early stopping), then the next speaker validates"),
    Protocol("uea_basicmotions", "UEA BasicMotions (smartwatch acc+gyro, 4 activities)",
             "UEA BasicMotions, 6 channels x 100, 4 classes", "fixed: the UEA TEST file",
             "uea_basicmotions", {"data.source": "uea", "data.options.name": "BasicMotions", "data.split": "fixed"},
             0.95, quick={"train.epochs": 20, "schedule.warmup_epochs": 0.0}, quick_target=0.5),
    Protocol("uea_japanesevowels", "UEA JapaneseVowels (12 LPC channels, 9 speakers)",
             "UEA JapaneseVowels, 12 channels x <=29, 9 classes", "fixed: the UEA TEST file",
             "uea_japanesevowels",
             {"data.source": "uea", "data.options.name": "JapaneseVowels", "data.split": "fixed"}, 0.95),
]}
QUICK_PROTOCOLS = tuple(name for name, p in PROTOCOLS.items() if p.quick is not None)


# ---------------------------------------------------------------------------- configs
def preset_config(name: str) -> RunConfig:
    """A fresh copy of preset `name`'s config (core.presets; ConfigError names the known ones)."""
    from core import presets

    return presets.get(name).config


def _needs_validation(cfg: RunConfig) -> bool:
    return cfg.schedule.name == "plateau" or cfg.train.early_stopping.enabled


def base_config(p: Protocol, model: str | None = None) -> tuple[RunConfig, str]:
    """(starting config, what it is: the preset's name) of protocol `p`; `model` (model-selectable
    protocols only) is a preset name or a zoo model name (then at its registry defaults)."""
    if not model or not p.model_selectable:
        return preset_config(p.preset), p.preset
    try:
        return preset_config(model), model
    except ConfigError:
        pass
    from core.models import list_models
    zoo = list(list_models())
    if model not in zoo:
        raise ConfigError(f"--model {model!r} is neither a preset nor a zoo model; zoo: {', '.join(zoo)}")
    cfg = preset_config(p.preset).with_overrides({"model.name": model, "model.hparams": {}})
    return cfg, f"{p.preset} with model {model} at its registry defaults"


def protocol_configs(p: Protocol, quick: bool = False, epochs: int | None = None, model: str | None = None,
                     sets: list[str] | tuple = (), seeds: int = 1) -> list[tuple[str | None, RunConfig]]:
    """[(fold label or None, RunConfig), ...]: the runs protocol `p` makes; `sets` ("key=value",
    as the CLI's --set) apply on top of the preset and the protocol, before the folds; with
    seeds > 1 each run comes `seeds` times in a row (train.seed, +1, ...) under the same label."""
    runs = _fold_configs(p, quick, epochs, model, sets)
    if seeds <= 1:
        return runs
    return [(label, cfg.with_overrides({"train.seed": cfg.train.seed + s, "name": f"{cfg.name}:seed{s}"}))
            for label, cfg in runs for s in range(seeds)]


def _fold_configs(p: Protocol, quick: bool, epochs: int | None, model: str | None,
                  sets: list[str] | tuple) -> list[tuple[str | None, RunConfig]]:
    from core.config import parse_sets

    cfg, _ = base_config(p, model)
    cfg = cfg.with_overrides(p.overrides)
    if sets:
        cfg = cfg.with_overrides(parse_sets(list(sets)))
    if quick:
        if p.quick is None:
            raise ConfigError(f"{p.name} has no --quick form; quick protocols: {', '.join(QUICK_PROTOCOLS)}")
        cfg = cfg.with_overrides(p.quick)
    if epochs is not None:
        cfg = cfg.with_overrides({"train.epochs": int(epochs)})
    prefix = "accuracy-quick" if quick else "accuracy"
    if not p.folds:
        return [(None, cfg.with_overrides({"name": f"{prefix}:{p.name}"}))]
    out = []
    labels = [label for label, _ in p.folds]
    for i, (label, fold) in enumerate(p.folds):
        c = cfg.with_overrides(fold)
        if _needs_validation(c):
            c = c.with_overrides({"data.val_groups": [labels[(i + 1) % len(labels)]]})
        else:
            c = c.with_overrides({"data.val_groups": [], "data.val_fraction": 0.0})
        out.append((label, c.with_overrides({"name": f"{prefix}:{p.name}:{label}"})))
    return out


def missing_data(p: Protocol, quick: bool = False) -> str:
    """'' when the protocol's data is here, else one line saying what is absent."""
    if quick:
        return ""
    absent = [need for need in p.needs if not (SHARED_DATA / need).exists()]
    if not absent:
        return ""
    return (f"{p.name}: skipped: needs the full data at ../shared/data/{absent[0]} (absent); "
            f"run it where the shared datasets are, or try --quick on the bundled samples")


