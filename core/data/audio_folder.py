"""Folders of audio recordings: class sub-folders, or labels from a file-name pattern.

    root/yes/a.wav, root/no/b.flac ...                      label = sub-folder name
    root/7_jackson_32.wav with pattern (?P<label>..)_(?P<group>..)_(?P<take>..)

Every file is decoded (core.data.audio: content-checked, mono, resampled to
cfg.sample_rate) and either padded/cropped to cfg.clip_seconds (options.mode="clip") or cut
into clip_seconds windows every options.hop_seconds (mode="window"). The pattern's `group`
(speaker) is the split group, else each file is its own group. `fsdd` is the preset for
the Free Spoken Digit Dataset with its standard split: takes 0-4 of each speaker/digit are
the test set (use split="fixed").
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from core.config import DataConfig
from core.errors import DataError
from core.data.audio import AUDIO_EXTENSIONS, DEFAULT_MAX_SECONDS, decode_audio, fit_clip
from core.data.examples import Examples
from core.data.paths import resolve_path
from core.data.sources import SourceSpec, full_option, get_source, register_source, source_options
from core.spec import Param, When
from core.data.windowing import window_starts

ALIGN = Param("align", "choice", "start", "which part of a longer recording a clip keeps (and where a short one "
              "is padded)", choices=("start", "center"), label="Align")
ON_ERROR = Param("on_error", "choice", "raise", "what an unreadable file does",
                 choices=("raise", "skip"), choice_help={"raise": "stop with its name and the reason",
                                                         "skip": "leave it out (listed in the data report)"},
                 label="On a bad file")
OPTIONS = (
    Param("pattern", "str", None, "regex on the file name stem with groups label (required), group, take",
          nullable=True, null_means="class sub-folders name the labels", label="Name pattern"),
    Param("mode", "choice", "clip", "how recordings become clips", choices=("clip", "window"),
          choice_help={"clip": "pad or crop each file to clip_seconds", "window": "cut files into clip_seconds "
                                                                                  "windows every hop_seconds"},
          label="Mode"),
    Param("hop_seconds", "float", None, "seconds between clip starts in window mode", low=1e-3, high=3600.0,
          unit="s", nullable=True, null_means="half a clip", label="Hop (s)",
          when=(When("data.options.mode", "==", "window"),)),
    ALIGN,
    Param("max_seconds", "float", DEFAULT_MAX_SECONDS, "longer files are refused", low=0.1, high=86_400.0,
          unit="s", label="Longest file (s)", sweep=False, advanced=True),
    ON_ERROR,
    Param("test_takes", "list", None, "takes (the pattern's take group) that form the fixed test set",
          item=Param("take", "int", 0, "a take number", low=0, high=10**9), nullable=True,
          null_means="no fixed test set", label="Test takes"),
    Param("max_windows", "int", 500_000, "more clips than this are refused", low=1, high=100_000_000,
          label="Max clips", sweep=False, advanced=True),
)
DEFAULT_OPTIONS = {p.name: p.default for p in OPTIONS}
FSDD_PATTERN = r"(?P<label>\d+)_(?P<group>[A-Za-z]+)_(?P<take>\d+)"


def audio_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise DataError(f"{root}: holds no {'/'.join(AUDIO_EXTENSIONS)} files (searched sub-folders too)")
    return files


def _label_of(path: Path, root: Path, pattern: re.Pattern | None) -> tuple[str, str, int | None]:
    """(label, group, take) of a file from the pattern or its class sub-folder."""
    if pattern is not None:
        m = pattern.fullmatch(path.stem)
        if m is None:
            raise DataError(f"{path}: the name does not match options.pattern {pattern.pattern!r}; "
                            "rename it or adjust the pattern")
        parts = m.groupdict()
        take = int(parts["take"]) if parts.get("take") not in (None, "") else None
        return parts["label"], parts.get("group") or path.stem, take
    rel = path.relative_to(root)
    if len(rel.parts) < 2:
        raise DataError(f"{path}: lies directly in {root}; put recordings in one sub-folder per class "
                        "(root/<class>/file.wav) or give options.pattern with a label group")
    return rel.parts[0], path.stem, None


def load_audio_files(cfg: DataConfig, root: Path, opts: dict, source_name: str,
                     files: list[Path] | None = None) -> Examples:
    """Every audio file under `root` (or just `files`, which lie under root) as clips."""
    if opts["mode"] not in ("clip", "window"):
        raise DataError(f"{source_name}: options.mode={opts['mode']!r}; use 'clip' or 'window'")
    if opts["align"] not in ("start", "center"):
        raise DataError(f"{source_name}: options.align={opts['align']!r}; use 'start' or 'center'")
    if cfg.sample_rate <= 0 or cfg.clip_seconds <= 0:
        raise DataError(f"sample_rate={cfg.sample_rate} and clip_seconds={cfg.clip_seconds} must be positive")
    pattern = None
    if opts["pattern"]:
        try:
            pattern = re.compile(opts["pattern"])
        except re.error as e:
            raise DataError(f"{source_name}: options.pattern is not a valid regex: {e}") from None
        if "label" not in pattern.groupindex:
            raise DataError(f"{source_name}: options.pattern needs a (?P<label>...) group")
    length = int(round(cfg.clip_seconds * cfg.sample_rate))
    hop = int(round((opts["hop_seconds"] or cfg.clip_seconds / 2) * cfg.sample_rate))
    test_takes = set(int(t) for t in opts["test_takes"]) if opts["test_takes"] is not None else None
    clips, labels, groups, ids, takes, skipped = [], [], [], [], [], []
    durations = []
    for path in audio_files(root) if files is None else files:
        try:
            label, group, take = _label_of(path, root if root.is_dir() else path.parent, pattern)
            y = decode_audio(path, cfg.sample_rate, float(opts["max_seconds"]))
        except DataError as e:
            if opts["on_error"] != "skip":
                raise
            skipped.append({"file": str(path), "reason": str(e)})
            continue
        durations.append(len(y) / cfg.sample_rate)
        if opts["mode"] == "clip":
            pieces = [fit_clip(y, length, opts["align"])]
            names = [path.name]
        else:
            starts = window_starts(len(y), length, hop) if len(y) >= length else np.array([0])
            pieces = [fit_clip(y[s:s + length], length) for s in starts]
            names = [f"{path.name}@{s}" for s in starts]
        clips.extend(pieces)
        labels.extend([label] * len(pieces))
        groups.extend([group] * len(pieces))
        ids.extend(names)
        takes.extend([take] * len(pieces))
        if len(clips) > int(opts["max_windows"]):
            raise DataError(f"{root}: more than {opts['max_windows']} clips (options.max_windows); "
                            "use a larger hop_seconds or fewer files")
    if not clips:
        raise DataError(f"{root}: no readable recordings ({len(skipped)} skipped: {skipped[:3]})")
    class_names = sorted(set(labels), key=lambda s: (len(s), s) if s.isdigit() else (1 << 30, s))
    index = {c: i for i, c in enumerate(class_names)}
    fixed = None
    if test_takes is not None:
        if any(t is None for t in takes):
            raise DataError(f"{source_name}: options.test_takes needs a (?P<take>...) group in options.pattern")
        fixed = np.array([t in test_takes for t in takes])
    info = {"path": str(root), "files": len(durations), "skipped_count": len(skipped), "skipped": skipped[:200],
            "mode": opts["mode"], "clip_samples": length,
            "seconds": {"min": round(min(durations), 3), "median": round(float(np.median(durations)), 3),
                        "max": round(max(durations), 3)}}
    return Examples(x=np.stack(clips).astype(np.float32), y=np.array([index[l] for l in labels], dtype=np.int64),
                    groups=np.array(groups, dtype=str), ids=np.array(ids, dtype=str), class_names=class_names,
                    channel_names=["audio"], sample_rate=float(cfg.sample_rate), signal="audio", info=info,
                    fixed_test=fixed)


def load_audio_folder(cfg: DataConfig) -> Examples:
    opts = source_options(cfg)
    return load_audio_files(cfg, resolve_path(cfg, None, None), opts, "audio_folder")


FSDD_BUNDLED = "fsdd/recordings"
FSDD_FULL = "fsdd/recordings"


def _fsdd_options(cfg: DataConfig) -> dict:
    return source_options(cfg, get_source("fsdd"))


def _synthetic_requests(opts: dict) -> list[tuple[str, int]]:
    """[(engine, voices), ...] the options ask for (core.data.tts.ENGINES), popped from `opts`."""
    from core.data import tts
    asked = [(name, opts.pop(eng.option, 0)) for name, eng in tts.ENGINES.items()]
    return [(name, voices) for name, voices in asked if voices]


def fsdd_files(cfg: DataConfig) -> list[Path]:
    """The recordings, plus the synthetic voices' WAVs when options.tts_voices/flite_voices ask for
    them, so the feature cache notices a new synthesizer (a new voice folder) as well as new recordings."""
    from core.data import tts
    files = audio_files(resolve_path(cfg, FSDD_BUNDLED, FSDD_FULL))
    for name, voices in _synthetic_requests(_fsdd_options(cfg)):
        files += tts.digit_files(tts.synthesize_digits(voices, engine_name=name), voices, name)
    return files


def load_fsdd(cfg: DataConfig) -> Examples:
    opts = _fsdd_options(cfg)
    requests = _synthetic_requests(opts)
    opts = {**DEFAULT_OPTIONS, "pattern": FSDD_PATTERN, **opts}
    real = load_audio_files(cfg, resolve_path(cfg, FSDD_BUNDLED, FSDD_FULL), opts, "fsdd")
    return with_synthetic_digits(real, cfg, opts, requests) if requests else real


def with_synthetic_digits(real: Examples, cfg: DataConfig, opts: dict, requests: list[tuple[str, int]]) -> Examples:
    """`real` plus each (engine, voices) request's voices saying each digit (core.data.tts), flagged train-only."""
    from core.data import tts
    parts, described = [], []
    index = {name: i for i, name in enumerate(real.class_names)}
    for name, voices in requests:
        folder = tts.synthesize_digits(voices, engine_name=name)
        synth = load_audio_files(cfg, folder, {**opts, "test_takes": None, "on_error": "raise"}, f"fsdd {name}",
                                 files=tts.digit_files(folder, voices, name))
        missing = sorted(set(synth.class_names) - set(index))
        if missing:
            raise DataError(f"fsdd: the recordings have no class {missing}; synthetic digits need all ten")
        parts.append((synth, np.array([index[c] for c in synth.class_names])[synth.y]))
        described.append({"voices": int(voices), "files": len(synth),
                          "engine": f"{name} {tts.engine(name).version()}", "folder": str(folder)})
    n_real = len(real)
    n_synth = sum(len(synth) for synth, _ in parts)
    fixed = None if real.fixed_test is None else np.concatenate([real.fixed_test, np.zeros(n_synth, bool)])
    info = {**real.info, "tts": {"voices": sum(d["voices"] for d in described), "files": n_synth,
                                 "engine": " + ".join(d["engine"] for d in described), "engines": described,
                                 "use": "train only"}}
    return Examples(x=np.concatenate([real.x] + [synth.x for synth, _ in parts]),
                    y=np.concatenate([real.y] + [y for _, y in parts]),
                    groups=np.concatenate([real.groups] + [synth.groups for synth, _ in parts]),
                    ids=np.concatenate([real.ids] + [np.char.add("tts/", synth.ids.astype(str)) for synth, _ in parts]),
                    class_names=real.class_names, channel_names=real.channel_names, sample_rate=real.sample_rate,
                    signal=real.signal, info=info, fixed_test=fixed,
                    train_only=np.concatenate([np.zeros(n_real, bool), np.ones(n_synth, bool)]))


register_source(SourceSpec(
    "audio_folder", load_audio_folder,
    "Folder of WAV/FLAC/OGG/MP3 in class sub-folders (or labels from a file-name pattern); mono, "
    "resampled to sample_rate, padded/cropped to clip_seconds or windowed",
    signal="audio", options=OPTIONS, default_data="none: give path",
    files=lambda cfg: audio_files(resolve_path(cfg, None, None)), windowed=False, needs_path=True,
    suggested={"features": "stack4"}))
register_source(SourceSpec(
    "fsdd", load_fsdd,
    "Free Spoken Digit Dataset (8 kHz, digits 0-9, 5 speakers); split='fixed' = standard split "
    "(takes 0-4 test)",
    signal="audio",
    options=(full_option("2,500 files in ../shared/data/fsdd; default: the bundled 300-file sample"),
             dataclasses.replace(OPTIONS[6], default=[0, 1, 2, 3, 4], nullable=False, advanced=True,
                                 help="takes that form the standard test set (split='fixed')"),
             dataclasses.replace(ALIGN, advanced=True), dataclasses.replace(ON_ERROR, advanced=True),
             Param("tts_voices", "int", 0, "add this many espeak-ng voices (7 accents x ~90 variants) saying the "
                   "digits, training split only (needs the espeak-ng program; 0 = none)", low=0, high=630, step=50,
                   label="Synthetic voices (espeak-ng)"),
             Param("flite_voices", "int", 0, "add this many flite voices (CMU's kal, awb, rms, slt with seeded "
                   "pitch, rate and vocal-tract length) saying the digits, training split only (needs the flite "
                   "program; 0 = none)", low=0, high=2000, step=50, label="Synthetic voices (flite)")),
    default_data=f"data/{FSDD_BUNDLED} (CC BY-SA 4.0)",
    files=fsdd_files, windowed=False, suggested={"features": "stack4", "split": "fixed", "sample_rate": 8000}))
