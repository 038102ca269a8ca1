"""HAPT: UCI smartphone recordings (raw accelerometer in g + gyroscope in rad/s at 50 Hz).

A preset of imu_csv over `subject, session, sample, acc_x..gyro_z, activity`: subject is the
split group, each (subject, session) is one stream, unlabeled rows never enter a window.
options.classes: "basic6" (the six activities; transitions count as unlabeled) or "all12"
(plus the six postural transitions). Data: see core.data.paths (bundled subjects 1-4,
options.full=true for subjects 1-25, or path).
"""
from __future__ import annotations

from pathlib import Path

from core.config import DataConfig
from core.data.examples import Examples
from core.data.imu_csv import DEFAULT_OPTIONS, load_imu_files
from core.data.paths import resolve_path
from core.data.sources import SourceSpec, full_option, register_source, source_options
from core.spec import Param

BASIC6 = ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING"]
TRANSITIONS = ["STAND_TO_SIT", "SIT_TO_STAND", "SIT_TO_LIE", "LIE_TO_SIT", "STAND_TO_LIE", "LIE_TO_STAND"]
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
BUNDLED = "hapt/hapt_subjects01-04.csv.gz"
FULL = "hapt/hapt_subjects01-25.csv.gz"


def _path(cfg: DataConfig) -> Path:
    return resolve_path(cfg, BUNDLED, FULL)


def load_hapt(cfg: DataConfig) -> Examples:
    opts = source_options(cfg)
    classes = BASIC6 if opts["classes"] == "basic6" else BASIC6 + TRANSITIONS
    channels = [c for c in CHANNELS if opts["sensors"] == "acc+gyro" or c.startswith(opts["sensors"])]
    imu_opts = {**DEFAULT_OPTIONS, "label": "activity", "subject": "subject", "session": "session",
                "channels": channels, "sample_rate": 50.0, "classes": classes, "chunk_rows": opts["chunk_rows"]}
    return load_imu_files(cfg, _path(cfg), imu_opts, "hapt", info={"classes_option": opts["classes"]})


OPTIONS = (
    Param("classes", "choice", "basic6", "which activities are classes", choices=("basic6", "all12"),
          choice_help={"basic6": "the six activities (postural transitions count as unlabeled)",
                       "all12": "all twelve, with the six postural transitions"}, label="Classes"),
    Param("sensors", "choice", "acc+gyro", "which of the phone's sensors the model sees",
          choices=("acc+gyro", "acc", "gyro"),
          choice_help={"acc+gyro": "accelerometer and gyroscope, 6 channels", "acc": "the accelerometer alone, 3 "
                       "channels (a device without a gyroscope; it saves about half the power)",
                       "gyro": "the gyroscope alone, 3 channels"}, label="Sensors"),
    full_option("25 subjects in ../shared/data/hapt; default: bundled subjects 1-4"),
    Param("chunk_rows", "int", 200_000, "CSV rows parsed at a time", low=1000, high=10_000_000, sweep=False, advanced=True,
          label="Rows per chunk"),
)

register_source(SourceSpec(
    "hapt", load_hapt,
    "UCI HAPT smartphone IMU (acc+gyro, 50 Hz, subject-wise); 6 activities or all 12 with transitions",
    signal="imu", options=OPTIONS, default_data=f"data/{BUNDLED} (CC BY 4.0)", files=lambda cfg: [_path(cfg)],
    nominal_rate=50.0, suggested={"split": "subject"}))
