"""The demo models: one audio and one IMU classifier trained on the data bundled in the
repository, so a fresh install can classify before the user trains anything.

No weights are shipped or downloaded: the demo models are trained on first use (from the
Classify page through the JobManager, with a progress bar, or by `python -m core
demo-models`) and are ordinary runs in the store, named "demo-audio" and "demo-imu".
Each trains in well under a minute of single-threaded CPU time.

    configs = demo_configs()                  # {"demo-audio": RunConfig, "demo-imu": RunConfig}
    demo_run(store, "demo-audio")             # the newest run of that name and config, or None
"""
from __future__ import annotations

from core.config import (DataConfig, ModelConfig, OptimConfig, ProbeConfig, RunConfig, ScheduleConfig,
                         TrainConfig)

DEMO_NAMES = ("demo-audio", "demo-imu")


def demo_configs() -> dict[str, RunConfig]:
    """The two demo runs' configs (deterministic: same seed, same bundled data)."""
    probes = ProbeConfig(every_n_steps=25, histogram_every_n_steps=100)
    audio = RunConfig(
        name="demo-audio",
        data=DataConfig(source="fsdd", split="fixed", features="stack4", sample_rate=8000, clip_seconds=1.0,
                        n_mels=32, n_fft=256, hop_length=128, val_fraction=0.1),
        model=ModelConfig(name="audio_resnet_attention",
                          hparams={"base_channels": 8, "d_model": 32, "heads": "4,4,2", "ffn_mult": 2,
                                   "pool_hidden": 16, "head_hidden": 32, "dropout": 0.1}),
        optim=OptimConfig(name="adamw", lr=3e-3, weight_decay=1e-2),
        schedule=ScheduleConfig(name="onecycle"),
        train=TrainConfig(epochs=30, batch_size=16, seed=0, device="cpu", probes=probes))
    imu = RunConfig(
        name="demo-imu",
        data=DataConfig(source="hapt", options={"classes": "basic6"}, window=128, stride=64, split="stratified"),
        model=ModelConfig(name="har_transformer",
                          hparams={"hidden_ch": 16, "dim": 32, "depth": 2, "heads": 4, "mlp_dim": 64}),
        optim=OptimConfig(name="adamw", lr=2e-3, weight_decay=1e-2),
        schedule=ScheduleConfig(name="onecycle"),
        train=TrainConfig(epochs=8, batch_size=64, seed=0, device="cpu", probes=probes))
    return {"demo-audio": audio, "demo-imu": imu}


def demo_run(store, name: str, statuses: tuple[str, ...] = ("completed",)) -> dict | None:
    """The newest stored run named `name` whose config is the current demo config and whose
    status is one of `statuses` (None when there is none)."""
    wanted = demo_configs()[name].to_dict()
    for run in store.list_runs(list(statuses)):
        if run["name"] == name and RunConfig.from_dict(run["config"]).to_dict() == wanted:
            return run
    return None
