"""Fixtures of the hostile-input tests: two stored runs (an IMU resnet1d and an audio model,
untrained: bad input is refused before the weights matter) and one long-lived worker."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from core.config import DataConfig
from core.store import Store
from tests.hostile.cases import Context
from tests.hostile.harness import HostileWorker
from tests.test_infer_bad_input import CHANNELS, stored_untrained_run


@pytest.fixture(scope="module")
def context():
    imu = stored_untrained_run("hostile-imu", "resnet1d", DataConfig(source="hapt"), (6, 128),
                               ["WALKING", "SITTING", "LAYING"], CHANNELS, 50.0, "imu",
                               {"base_channels": 8, "num_stages": 2})
    audio = stored_untrained_run("hostile-audio", "audio_resnet_attention",
                                 DataConfig(source="fsdd", features="stack4", n_mels=32, hop_length=128), (4, 32, 63),
                                 [str(d) for d in range(10)], ["logmel", "mfcc", "delta", "delta2"], 8000.0,
                                 "spectrogram", {"base_channels": 8, "d_model": 32, "heads": "4"})
    folder = Path(tempfile.mkdtemp(prefix="sigscope-hostile-"))
    yield Context(folder, imu, audio, Path(Store().get_run(imu)["run_dir"]))


@pytest.fixture(scope="module")
def worker():
    w = HostileWorker()
    yield w
    w.close()
