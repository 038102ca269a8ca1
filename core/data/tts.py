"""Synthetic spoken digits from espeak-ng: more voices for a digit model trained on few speakers.

    folder = synthesize_digits(600)        # 10 WAVs per voice, 8 kHz mono, cached on disk
    # or, as a data option:  --set data.options.tts_voices=600  on the fsdd source

FSDD has five speakers, so a model trained on four of them meets the fifth as a stranger:
0.78 mean accuracy leave-one-speaker-out with augmentation alone, 0.85 with 300 espeak-ng
voices, more with flite's voices on top (docs/RESULTS.md). A formant
synthesizer is a cheap source of new "speakers": espeak-ng (Debian package `espeak-ng`, run
locally, nothing downloaded) says the ten digit words in 7 English accents x its ~90 voice
variants, each voice with its own pitch (20-80) and rate (110-210 words per minute).

Voice i is always the same (accent, variant, pitch, rate) for a given espeak-ng install, so N
voices are a prefix of M > N voices and one cache folder serves them all. Files are named like
FSDD's (`7_ttsabc_0.wav`: digit, voice, take), silence-trimmed and resampled to 8 kHz, so the
fsdd loader reads them unchanged; it flags them train-only (core.data.splits), so nothing
synthetic is ever validated or tested on.

A second engine, flite (Debian package `flite`, option `flite_voices`), speaks with CMU's
voices built from recordings of real people (kal: a diphone voice; awb, rms, slt:
statistical-parametric voices of a Scottish man, an American man and an American woman), which
sound less like a machine than espeak-ng's formant synthesis. Each flite voice is one of those
four with a seeded pitch, rate and vocal-tract length: the audio is synthesized slower or
faster and then resampled, which moves every formant and the pitch by the same factor while
the duration lands where the drawn rate puts it (a shorter or longer vocal tract, as the `speed`
augmentation does, without its change of tempo). Its files are named `7_fltabc_0.wav`.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from core.data.cache import default_cache_dir
from core.errors import DataError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
# Variants that do not sound like a person (ring-modulated robots, a growl) are left out.
_NOT_HUMAN = re.compile(r"robo|robot|demonic", re.IGNORECASE)
PITCH = (20, 80)  # espeak-ng -p, 0-99 (50 = the voice's own)
RATE = (110, 210)  # espeak-ng -s, words per minute (175 = default)
SAMPLE_RATE = 8000
TRIM_TOP_DB = 35.0
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_INSTALL_HINT = "install espeak-ng (Debian: apt-get install espeak-ng; `make test` does this as root)"
# flite: CMU's built-in voices (name, pitch range in Hz) and what every voice draws from
FLITE_BASES = (("kal", (85, 160)), ("awb", (85, 160)), ("rms", (85, 160)), ("slt", (160, 270)))
FLITE_VOICES = 2000
FLITE_PITCH_SPREAD = (5, 30)  # int_f0_target_stddev, Hz: how much the intonation moves
FLITE_STRETCH = (0.8, 1.3)  # duration of the spoken word, x the voice's own
FLITE_TRACT = (0.87, 1.15)  # formant (and pitch) factor: about -2.4 to +2.4 semitones
_FLITE_HINT = "install flite (Debian: apt-get install flite; `make test` does this as root)"


def espeak_binary() -> str:
    """Path of espeak-ng; a DataError saying how to install it when it is missing."""
    found = shutil.which("espeak-ng")
    if found is None:
        raise DataError(f"synthetic voices need the espeak-ng program, which is not on PATH: {_INSTALL_HINT}")
    return found


def _call(program: str, binary: str, args: tuple[str, ...]) -> bytes:
    """stdout of `binary args` (a synthesizer); a DataError naming `program` when it fails or hangs."""
    try:
        done = subprocess.run([binary, *args], capture_output=True, check=True, timeout=60)
    except subprocess.CalledProcessError as e:
        raise DataError(f"{program} {' '.join(args)} failed: {e.stderr.decode(errors='replace').strip()}") from None
    except subprocess.TimeoutExpired:
        raise DataError(f"{program} {' '.join(args)} did not finish in 60 s") from None
    return done.stdout


def _espeak(*args: str, binary: str | None = None) -> bytes:
    return _call("espeak-ng", binary or espeak_binary(), args)


@lru_cache(maxsize=1)
def espeak_version() -> str:
    """'1.51' style version string of the installed espeak-ng (asked once per process)."""
    text = _espeak("--version").decode(errors="replace")
    m = re.search(r"text-to-speech:\s*(\S+)", text)
    return m.group(1) if m else text.strip()[:40]


@lru_cache(maxsize=1)
def variants() -> tuple[str, ...]:
    """The installed voice variants that sound like a person, in espeak-ng's order (listed once per process)."""
    lines = _espeak("--voices=variant").decode(errors="replace").splitlines()[1:]
    names = [line.split()[4].split("/")[-1] for line in lines if len(line.split()) >= 5]
    return tuple(n for n in names if not _NOT_HUMAN.search(n))


def voice_name(i: int) -> str:
    """'ttsaab' for voice 1: letters only, so FSDD's file-name pattern reads it as the speaker."""
    return "tts" + _LETTERS[i // 676 % 26] + _LETTERS[i // 26 % 26] + _LETTERS[i % 26]


def voice_table(names: tuple[str, ...] | None = None) -> list[dict]:
    """Every voice: accent x variant in a fixed shuffled order, each with a seeded pitch and rate."""
    names = variants() if names is None else names
    if not names:
        raise DataError("espeak-ng lists no voice variants; reinstall espeak-ng-data")
    pairs = list(itertools.product(ACCENTS, names))
    order = np.random.default_rng(0).permutation(len(pairs))
    table = []
    for i, k in enumerate(order.tolist()):
        rng = np.random.default_rng(1000 + i)
        accent, variant = pairs[k]
        table.append({"name": voice_name(i), "voice": f"{accent}+{variant}",
                      "pitch": int(rng.integers(*PITCH)), "rate": int(rng.integers(*RATE))})
    return table


def _trimmed(wav: bytes, program: str, word: str, voice: dict) -> tuple[np.ndarray, int]:
    """(samples, rate) of a synthesizer's WAV bytes with the silence around the word trimmed."""
    import librosa
    import soundfile as sf
    try:
        y, sr = sf.read(io.BytesIO(wav), dtype="float32")
    except RuntimeError as e:
        raise DataError(f"{program} gave no readable audio for {word!r} in {voice['voice']}: {e}") from None
    return librosa.effects.trim(y, top_db=TRIM_TOP_DB)[0], sr


def _render(word: str, voice: dict, binary: str) -> np.ndarray:
    import librosa
    wav = _espeak("-v", voice["voice"], "-p", str(voice["pitch"]), "-s", str(voice["rate"]), "--stdout", word,
                  binary=binary)
    y, sr = _trimmed(wav, "espeak-ng", word, voice)
    return librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE).astype(np.float32)


# ---- flite ---------------------------------------------------------------------------------
def flite_binary() -> str:
    """Path of flite; a DataError saying how to install it when it is missing."""
    found = shutil.which("flite")
    if found is None:
        raise DataError(f"flite voices need the flite program, which is not on PATH: {_FLITE_HINT}")
    return found


def _flite(*args: str, binary: str | None = None) -> bytes:
    return _call("flite", binary or flite_binary(), args)


@lru_cache(maxsize=1)
def flite_version() -> str:
    """'2.2' style version string of the installed flite (asked once per process)."""
    done = subprocess.run([flite_binary(), "--version"], capture_output=True, timeout=60)  # exits 1 after printing
    text = (done.stdout + done.stderr).decode(errors="replace")
    m = re.search(r"flite-(\S+)", text)
    return m.group(1) if m else text.strip()[:40]


def flite_voice_name(i: int) -> str:
    """'fltaab' for flite voice 1 (letters only, like voice_name, and never one of espeak-ng's)."""
    return "flt" + voice_name(i)[3:]


def flite_table() -> list[dict]:
    """FLITE_VOICES voices: base voice in turn, each with a seeded pitch, intonation, rate and tract factor."""
    table = []
    for i in range(FLITE_VOICES):
        rng = np.random.default_rng(5000 + i)
        base, pitch = FLITE_BASES[i % len(FLITE_BASES)]
        table.append({"name": flite_voice_name(i), "voice": base, "f0": int(rng.integers(*pitch)),
                      "f0_spread": int(rng.integers(*FLITE_PITCH_SPREAD)),
                      "stretch": round(float(rng.uniform(*FLITE_STRETCH)), 3),
                      "tract": round(float(rng.uniform(*FLITE_TRACT)), 3)})
    return table


def _render_flite(word: str, voice: dict, binary: str) -> np.ndarray:
    import librosa
    # synthesized `tract` times longer, then played `tract` times faster: formants and pitch x tract,
    # the duration back at `stretch`
    tract = voice["tract"]
    wav = _flite("-voice", voice["voice"], "--setf", f"int_f0_target_mean={voice['f0'] / tract:.1f}",
                 "--setf", f"int_f0_target_stddev={voice['f0_spread']}",
                 "--setf", f"duration_stretch={voice['stretch'] * tract:.3f}", "-t", word, "-o", "/dev/stdout",
                 binary=binary)
    y, sr = _trimmed(wav, "flite", word, voice)
    y = librosa.resample(y, orig_sr=sr * tract, target_sr=SAMPLE_RATE)
    return (0.5 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)  # flite's level varies by voice


@dataclass(frozen=True)
class Engine:
    """One synthesizer: how to find it, its voice table and how it says one word."""

    name: str  # "espeak-ng"
    option: str  # the fsdd data option that asks for its voices
    binary: Callable[[], str]
    version: Callable[[], str]
    table: Callable[[], list[dict]]
    render: Callable[[str, dict, str], np.ndarray]
    voice_name: Callable[[int], str]


ENGINES = {
    "espeak-ng": Engine("espeak-ng", "tts_voices", espeak_binary, espeak_version, voice_table,
                        _render, voice_name),
    "flite": Engine("flite", "flite_voices", flite_binary, flite_version, flite_table, _render_flite,
                    flite_voice_name),
}


def deferred(data: dict) -> tuple[dict, int]:
    """A data config dict without the synthetic voices it asks for, and how many training clips
    they add (each voice says the ten digits, training split only): a summary of the data can
    skip the minutes the first synthesis takes."""
    options = dict(data.get("options") or {})
    voices = sum(int(options.pop(eng.option, 0) or 0) for eng in ENGINES.values())
    return ({**data, "options": options} if voices else data), voices * len(DIGIT_WORDS)


def engine(name: str) -> Engine:
    if name not in ENGINES:
        raise DataError(f"unknown speech engine {name!r}; known: {', '.join(ENGINES)}")
    return ENGINES[name]


def synthesize_digits(voices: int, cache_dir: str | Path | None = None, progress=None,
                      engine_name: str = "espeak-ng") -> Path:
    """A folder of `voices` x 10 digit WAVs (`<digit>_<voice>_0.wav`) by engine `engine_name`
    ("espeak-ng" or "flite"), made once and cached.

    progress: optional callable(done, total) while files are being made.
    """
    import soundfile as sf
    eng = engine(engine_name)
    if int(voices) != voices or voices < 1:
        raise DataError(f"{eng.option}={voices!r} must be a whole number of voices >= 1")
    binary = eng.binary()
    version = eng.version()
    table = eng.table()
    if voices > len(table):
        raise DataError(f"{eng.option}={voices} is more than the {len(table)} voices made with {eng.name}"
                        + (f" ({len(ACCENTS)} accents x {len(table) // len(ACCENTS)} variants)"
                           if eng.name == "espeak-ng" else ""))
    tag = hashlib.sha256(json.dumps([version, table], sort_keys=True).encode()).hexdigest()[:12]
    folder = default_cache_dir(cache_dir) / "tts" / f"{eng.name}-{version}-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(d, word, v) for v in table[:int(voices)] for d, word in enumerate(DIGIT_WORDS)
            if not (folder / f"{d}_{v['name']}_0.wav").exists()]

    def make(job):
        d, word, v = job
        y = eng.render(word, v, binary)
        if len(y) < SAMPLE_RATE // 20:
            raise DataError(f"{eng.name} said {word!r} in {v['voice']} as {len(y)} samples of sound")
        tmp = folder / f".{d}_{v['name']}_0.{os.getpid()}.{threading.get_ident()}.tmp.wav"  # two writers never share one
        sf.write(tmp, y, SAMPLE_RATE, subtype="PCM_16")
        os.replace(tmp, folder / f"{d}_{v['name']}_0.wav")  # whole files only, even after a crash

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        for done, _ in enumerate(pool.map(make, jobs), start=1):
            if progress is not None:
                progress(done, len(jobs))
    (folder / "voices.json").write_text(json.dumps({"engine": eng.name, "version": version, "voices": table},
                                                   indent=1))
    return folder


def digit_files(folder: Path, voices: int, engine_name: str = "espeak-ng") -> list[Path]:
    """The WAVs of the first `voices` voices in a synthesize_digits folder."""
    name = engine(engine_name).voice_name
    return [folder / f"{d}_{name(i)}_0.wav" for i in range(int(voices)) for d in range(len(DIGIT_WORDS))]
