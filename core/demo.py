"""The demo models: one audio and one IMU classifier trained on the data bundled in the
repository, so a fresh install can classify before the user trains anything.

Their weights are committed, small (under 1 MB together, with their history), in `data/demo-models/`, made
by `python -m core demo-models --train --write-bundle` from the configs below; nothing is
downloaded. The first time a store needs a demo (Classify's first load, `demo-models`,
`predict --run demo-audio`) the bundled run is installed into it in milliseconds: an
ordinary completed run with its curves, probes and test report, so Monitor, Runs and
Classify show it like any run. When the bundle is missing, or no longer matches the demo
config, the demo is trained instead (about 20 s each on one CPU core).
tests/test_demo_bundle.py re-derives each bundled model's stated test accuracy.

    configs = demo_configs()                  # {"demo-audio": RunConfig, "demo-imu": RunConfig}
    demo_run(store, "demo-audio")             # the newest run of that name and config, or None
    ensure_bundled(store)                     # install the bundled demos a store lacks
"""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from core.config import (DataConfig, ModelConfig, OptimConfig, ProbeConfig, RunConfig, ScheduleConfig,
                         TrainConfig)

DEMO_NAMES = ("demo-audio", "demo-imu")
BUNDLE_DIR = Path(__file__).resolve().parents[1] / "data" / "demo-models"
RUN_FILES = ("config.json", "classes.json", "normalization.json")  # copied as they are; the weights as model.pt
WRITE_COMMAND = "python -m core demo-models --train --write-bundle"


def demo_configs() -> dict[str, RunConfig]:
    """The two demo runs' configs (deterministic: same seed, same bundled data; loaded in the
    training process, as the bundled runs were made)."""
    probes = ProbeConfig()  # cadence scaled to the run's length (about 50 points, 20 histograms)
    audio = RunConfig(
        name="demo-audio",
        data=DataConfig(source="fsdd", split="fixed", features="stack4", sample_rate=8000, clip_seconds=1.0,
                        n_mels=32, n_fft=256, hop_length=128, val_fraction=0.1),
        model=ModelConfig(name="audio_resnet_attention",
                          hparams={"base_channels": 8, "d_model": 32, "heads": "4,4,2", "ffn_mult": 2,
                                   "pool_hidden": 16, "head_hidden": 32, "dropout": 0.1}),
        optim=OptimConfig(name="adamw", lr=3e-3, weight_decay=1e-2),
        schedule=ScheduleConfig(name="onecycle"),
        train=TrainConfig(epochs=30, batch_size=16, seed=0, device="cpu", probes=probes, num_workers=0))
    imu = RunConfig(
        name="demo-imu",
        data=DataConfig(source="hapt", options={"classes": "basic6"}, window=128, stride=64, split="stratified"),
        model=ModelConfig(name="har_transformer",
                          hparams={"hidden_ch": 16, "dim": 32, "depth": 2, "heads": 4, "mlp_dim": 64}),
        optim=OptimConfig(name="adamw", lr=2e-3, weight_decay=1e-2),
        schedule=ScheduleConfig(name="onecycle"),
        train=TrainConfig(epochs=8, batch_size=64, seed=0, device="cpu", probes=probes, num_workers=0))
    return {"demo-audio": audio, "demo-imu": imu}


def demo_run(store, name: str, statuses: tuple[str, ...] = ("completed",)) -> dict | None:
    """The newest stored run named `name` whose config is the current demo config and whose
    status is one of `statuses` (None when there is none)."""
    wanted = demo_configs()[name].to_dict()
    for run in store.list_runs(list(statuses)):
        if run["name"] == name and RunConfig.from_dict(run["config"]).to_dict() == wanted:
            return run
    return None


# ---- the committed bundle ------------------------------------------------------------------
def bundle_manifest(name: str, bundle_dir: Path | None = None) -> dict | None:
    """The bundled demo's demo.json (stated test accuracy, when and how it was made), or None
    when the bundle is absent, incomplete or made from another config than today's."""
    folder = (bundle_dir or BUNDLE_DIR) / name
    needed = [folder / f for f in (*RUN_FILES, "model.pt", "run.json.gz", "demo.json")]
    if not all(f.is_file() for f in needed):
        return None
    try:
        manifest = json.loads((folder / "demo.json").read_text())
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if RunConfig.from_dict(config).to_dict() != demo_configs()[name].to_dict():
        return None  # the demo config changed since the bundle was written: train it instead
    return manifest


def install_bundled(store, name: str, bundle_dir: Path | None = None) -> str | None:
    """Install the bundled demo `name` into `store` as a completed run; its id, or None when
    there is no usable bundle. Milliseconds: files are copied, rows inserted in one go."""
    if bundle_manifest(name, bundle_dir) is None:
        return None
    folder = (bundle_dir or BUNDLE_DIR) / name
    dump = json.loads(gzip.decompress((folder / "run.json.gz").read_bytes()))
    run_id = store.restore_run(dump)
    target = Path(store.get_run(run_id)["run_dir"])
    try:
        for f in RUN_FILES:
            shutil.copyfile(folder / f, target / f)
        (target / "checkpoints").mkdir(exist_ok=True)
        shutil.copyfile(folder / "model.pt", target / "checkpoints" / "best.pt")
    except OSError:
        store.delete_run(run_id)
        raise
    with store.writer(run_id) as w:
        for kind, path in (("config", "config.json"), ("classes", "classes.json"),
                           ("normalization", "normalization.json"), ("checkpoint_best", "checkpoints/best.pt")):
            w.artifact(kind, target / path, {"bundled": str(folder)} if kind == "checkpoint_best" else None)
        w.event(f"installed from the bundled demo weights in {folder} (made by `{WRITE_COMMAND}`)")
    return run_id


def ensure_bundled(store, names: tuple[str, ...] = DEMO_NAMES) -> dict[str, str]:
    """Make sure each demo has a completed run in `store`, installing bundled ones where
    missing; {name: run id} of those it installed (a demo with no usable bundle is left out)."""
    installed = {}
    for name in names:
        if demo_run(store, name) is None and demo_run(store, name, ("queued", "running")) is None:
            run_id = install_bundled(store, name)
            if run_id is not None:
                installed[name] = run_id
    return installed


def write_bundle(store, name: str, run_id: str, bundle_dir: Path | None = None) -> Path:
    """Write completed run `run_id` as the bundled demo `name`: its files, its best weights
    without optimizer state, its store rows, and demo.json with the test scores it states."""
    import datetime

    import torch

    from core.train.checkpoints import read_checkpoint

    run = store.get_run(run_id)
    if run is None or run["status"] != "completed":
        raise ValueError(f"run {run_id} is not a completed run")
    source = Path(run["run_dir"])
    folder = (bundle_dir or BUNDLE_DIR) / name
    folder.mkdir(parents=True, exist_ok=True)
    for f in RUN_FILES:
        shutil.copyfile(source / f, folder / f)
    state = read_checkpoint(source / "checkpoints" / "best.pt")
    torch.save({k: state[k] for k in ("format", "model", "model_name", "epoch", "global_step") if k in state},
               folder / "model.pt")
    dump = _rounded(store.dump_run(run_id))
    (folder / "run.json.gz").write_bytes(gzip.compress(json.dumps(dump).encode(), mtime=0))
    finals = store.final_metrics(run_id)
    manifest = {"name": name, "run_id": run_id, "made_by": WRITE_COMMAND,
                "made_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "torch": torch.__version__, "checkpoint_epoch": state.get("epoch"),
                "test_accuracy": finals.get("test_accuracy"), "test_macro_f1": finals.get("test_macro_f1")}
    (folder / "demo.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def _rounded(dump: dict) -> dict:
    """The dump with probe values and histogram edges at 4 significant digits (what the
    charts can show), which halves the committed file."""
    def r(v):
        return float(f"{v:.4g}") if isinstance(v, float) else v

    tables = dump["tables"]
    tables["probes"] = [[*row[:-1], r(row[-1])] for row in tables["probes"]]
    tables["histograms"] = [[*row[:3], json.dumps([r(v) for v in json.loads(row[3])]),
                             json.dumps([r(v) for v in json.loads(row[4])])] for row in tables["histograms"]]
    return dump
