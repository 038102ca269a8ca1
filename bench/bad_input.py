"""Refusing the worst inputs must cost about what a normal answer costs: time and peak memory to
refuse each worst case, as ratios to classifying a normal 10 s recording in the same run.

    python bench/bad_input.py            # every case, 3 repeats each, medians
    python bench/bad_input.py --repeats 1

Worst cases (issue 18 measured the first three at minutes and gigabytes before the fix):
- a 1-million-row CSV (45 MB) against an IMU run;
- a 12 MB CSV on one line;
- a gzip bomb: 60 MB of CSV text compressed to ~60 kB;
- `profile --shape 6,100000000` and `profile --batch 100000000`.
Baselines: a normal 10 s IMU CSV (500 rows at 50 Hz) and a normal 10 s WAV, each classified.

Each case runs in a fresh process (`python -c`), so its peak RSS (ru_maxrss) and CPU time
(user + system) are its own; the interpreter's start-up and imports are in every figure,
baselines included, which is what a person waits for with the CLI. CPU time, not wall time,
because the machine may be shared. A refused case prints its message's first 100 characters.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]

CHILD = r"""
import json, resource, sys, os
case = json.loads(sys.argv[1])
from core.errors import SigscopeError
outcome = "answered"
try:
    if case["op"] == "classify":
        from core.infer import classify_file, load_run
        classify_file(load_run(case["run"]), case["file"])
    else:
        from core.profile import profile_model
        profile_model("resnet1d", {}, input_shape=tuple(case["shape"]), batch_size=case["batch"], measure_latency=False)
except SigscopeError as e:
    outcome = "refused: " + str(e).splitlines()[0][:100]
t = os.times()
print(json.dumps({"outcome": outcome, "cpu": t.user + t.system,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def csv_rows(rows: int, seed: int = 0) -> str:
    t = np.arange(rows) / 50.0
    values = np.sin(2 * np.pi * 1.5 * t[:, None] + np.arange(6)) + 0.1 * np.random.default_rng(seed).standard_normal((rows, 6))
    return ",".join(CHANNELS) + "\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in values) + "\n"


def make_runs(env: dict) -> dict[str, str]:
    code = ("import json; from core.config import DataConfig; "
            "from tests.test_infer_bad_input import CHANNELS, stored_untrained_run as s;"
            "print(json.dumps({'imu': s('bench-imu', 'resnet1d', DataConfig(source='hapt'), (6, 128), "
            "['WALKING', 'SITTING', 'LAYING'], CHANNELS, 50.0, 'imu', {'base_channels': 16}), "
            "'audio': s('bench-audio', 'audio_resnet_attention', DataConfig(source='fsdd', features='stack4', "
            "n_mels=32, hop_length=128), (4, 32, 63), [str(d) for d in range(10)], ['logmel', 'mfcc', 'delta', "
            "'delta2'], 8000.0, 'spectrogram', {'base_channels': 8, 'd_model': 32, 'heads': '4'})}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def measure(case: dict, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(case)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1800)
    if done.returncode != 0:
        return {"outcome": f"crashed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1][:100]}",
                "cpu": float("nan"), "peak_mb": float("nan")}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sigscope-bench-bad-"))
    env = dict(os.environ, SIGSCOPE_RUNS_DIR=str(folder / "runs"), SIGSCOPE_CACHE_DIR=str(folder / "cache"),
               OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    runs = make_runs(env)
    (folder / "normal.csv").write_text(csv_rows(500))
    wav = np.concatenate([sf.read(p)[0] for p in sorted((ROOT / "data" / "fsdd" / "recordings").glob("*.wav"))[:30]])
    sf.write(folder / "normal.wav", wav[:80_000], 8000)
    (folder / "million.csv").write_text(csv_rows(1_000_000))
    (folder / "one_line.csv").write_text(",".join(CHANNELS) + "," + ",".join(["0.123456"] * 1_400_000))
    (folder / "bomb.csv.gz").write_bytes(gzip.compress((",".join(CHANNELS) + "\n"
                                                        + "0,0,0,0,0,0\n" * 5_000_000).encode(), 9))
    sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    cases = {
        "normal 10 s IMU CSV (baseline)": {"op": "classify", "run": runs["imu"], "file": str(folder / "normal.csv")},
        "normal 10 s WAV (baseline)": {"op": "classify", "run": runs["audio"], "file": str(folder / "normal.wav")},
        f"1 M rows CSV ({sizes['million.csv'] / 1e6:.0f} MB)": {"op": "classify", "run": runs["imu"],
                                                               "file": str(folder / "million.csv")},
        f"one-line CSV ({sizes['one_line.csv'] / 1e6:.0f} MB)": {"op": "classify", "run": runs["imu"],
                                                                "file": str(folder / "one_line.csv")},
        f"gzip bomb ({sizes['bomb.csv.gz'] / 1e3:.0f} kB -> 60 MB)": {"op": "classify", "run": runs["imu"],
                                                                      "file": str(folder / "bomb.csv.gz")},
        "profile --shape 6,100000000": {"op": "profile", "shape": [6, 100_000_000], "batch": 32},
        "profile --batch 100000000": {"op": "profile", "shape": [6, 128], "batch": 100_000_000},
    }
    results: dict[str, list[dict]] = {name: [] for name in cases}
    for _ in range(args.repeats):  # interleaved, so a busy spell hits every case alike
        for name, case in cases.items():
            results[name].append(measure(case, env))
    base = {k: statistics.median(r["cpu"] for r in results["normal 10 s IMU CSV (baseline)"]) for k in ("cpu",)}
    base["peak_mb"] = statistics.median(r["peak_mb"] for r in results["normal 10 s IMU CSV (baseline)"])
    print(f"{'case':42s} {'CPU s':>7s} {'x base':>7s} {'peak MB':>8s} {'x base':>7s}  outcome")
    for name, rs in results.items():
        cpu = statistics.median(r["cpu"] for r in rs)
        peak = statistics.median(r["peak_mb"] for r in rs)
        print(f"{name:42s} {cpu:7.2f} {cpu / base['cpu']:7.2f} {peak:8.0f} {peak / base['peak_mb']:7.2f}  "
              f"{rs[-1]['outcome']}")
    print("\nratios are to classifying the normal 10 s IMU CSV in the same run (a fresh process each, imports "
          "included); the 10 s WAV is a second reference")


if __name__ == "__main__":
    main()
