"""Latency of classifying a 30 s clip end to end vs the bare model forward on the same windows.

    .venv/bin/python bench/predict_latency.py [--seconds 30] [--hop 0.5] [--repeats 7] [--threads N]

The default audio model: audio_resnet_attention at its registry defaults on the default
stack4 features (8 kHz, 1 s clips, 40 mels, hop 64 -> (4, 40, 126) per window), with a
z-score normalization fitted on bundled FSDD clips. Weights are untrained: latency does not
depend on them. The clip is bundled FSDD recordings laid end to end to 30 s, written as WAV.

Measured (median of --repeats, after one warm-up):
  full = core.infer.classify_file: decode + resample check + windows + features +
         normalization + model with attention capture + rollout + stitching to seconds
  bare = model(x) under no_grad on the same normalized windows, fused attention path
Prints full, bare, full/bare and the split of full into its parts. Target: full < 0.5 s on CPU.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from core.config import DataConfig, ModelConfig, RunConfig  # noqa: E402
from core.data.audio import decode_audio  # noqa: E402
from core.data.features import feature_normalization_methods, featurize_audio  # noqa: E402
from core.data.normalize import fit_normalization  # noqa: E402
from core.infer import classify_file, load_run_dir, sliding_starts  # noqa: E402
from core.models import create  # noqa: E402
from core.models.attention import capture_attention  # noqa: E402
from core.train.checkpoints import atomic_torch_save, write_run_files  # noqa: E402

FSDD = ROOT / "data" / "fsdd" / "recordings"
MODEL = "audio_resnet_attention"


def interleaved_medians(steps: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each callable, after one warm-up each, measured round-robin."""
    for fn in steps.values():
        fn()  # warm-up (allocator, oneDNN kernels, mel filters)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def make_run(folder: Path) -> None:
    """A run folder for the default audio model on default stack4 features."""
    cfg = RunConfig(name="bench", data=DataConfig(source="fsdd", features="stack4"), model=ModelConfig(name=MODEL))
    files = sorted(FSDD.glob("*.wav"))[:64]
    clips = np.stack([np.pad(y, (0, max(0, 8000 - len(y))))[:8000]
                      for y in (decode_audio(f, cfg.data.sample_rate) for f in files)])
    feats = featurize_audio(clips, cfg.data.sample_rate, cfg.data)
    norm = fit_normalization(feats, "zscore", feature_normalization_methods(cfg.data, feats.shape[1]))
    shape = tuple(feats.shape[1:])
    write_run_files(folder, cfg, SimpleNamespace(normalization=norm, class_names=[str(d) for d in range(10)],
                                                 channel_names=["logmel", "mfcc", "delta", "delta2"],
                                                 input_shape=shape, input_kind="spectrogram", sample_rate=8000.0))
    (folder / "checkpoints").mkdir()
    atomic_torch_save({"model": create(MODEL, shape, 10).state_dict()}, folder / "checkpoints" / "best.pt")


def make_clip(path: Path, seconds: float) -> None:
    parts, total = [], 0
    for f in sorted(FSDD.glob("*.wav")):
        y, rate = sf.read(f, dtype="float32")
        parts.append(y)
        total += len(y)
        if total >= seconds * 8000:
            break
    sf.write(path, np.concatenate(parts)[:int(seconds * 8000)], 8000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--hop", type=float, default=0.5, help="seconds between windows (default 0.5)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_run(tmp / "run")
        make_clip(tmp / "clip.wav", args.seconds)
        predictor = load_run_dir(tmp / "run")
        signal = decode_audio(tmp / "clip.wav", predictor.sample_rate)
        starts = sliding_starts(len(signal), predictor.window, int(round(args.hop * predictor.sample_rate)))
        x = torch.from_numpy(predictor.inputs(signal, starts))
        model = predictor.model

        def bare():
            with torch.no_grad():
                model(x)

        def forward_with_capture():
            with torch.no_grad(), capture_attention(model):
                model(x)

        steps = {"full": lambda: classify_file(predictor, tmp / "clip.wav", hop=args.hop), "bare": bare,
                 "decode": lambda: decode_audio(tmp / "clip.wav", predictor.sample_rate),
                 "features": lambda: predictor.inputs(signal, starts), "captured": forward_with_capture}
        # interleaved repeats, so a burst of load on a shared machine hits every measurement alike;
        # numpy's BLAS single-threaded throughout, as classify_file runs it
        with threadpool_limits(1, user_api="blas"):
            times = interleaved_medians(steps, args.repeats)
        full, base, decode, features, captured = (times[k] for k in ("full", "bare", "decode", "features", "captured"))
    print(f"{MODEL} (registry defaults), {args.seconds:g} s clip, {len(starts)} windows of {tuple(x.shape[1:])} "
          f"every {args.hop:g} s, torch threads {torch.get_num_threads()}")
    print(f"  bare model forward (no_grad, fused attention): {base * 1000:8.1f} ms")
    print(f"  full classify_file (median of {args.repeats}):       {full * 1000:8.1f} ms   ratio full/bare = "
          f"{full / base:.2f}x")
    print(f"    decode {decode * 1000:.1f} ms, windows+features+normalization {features * 1000:.1f} ms, "
          f"forward with attention capture {captured * 1000:.1f} ms, rest (rollout, stitching, softmax) "
          f"{max(0.0, full - decode - features - captured) * 1000:.1f} ms")
    verdict = "meets" if full < 0.5 else "MISSES"
    print(f"  target: full < 500 ms on CPU -> {verdict} ({full * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
