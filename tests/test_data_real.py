"""Real data: the full shared files (skipped when ../shared/data is absent), the bundled
samples in data/, the WISDM v1.1 fixture and aeon's offline UEA sets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import shared_data
from core import data
from core.config import DataConfig

FIXTURES = Path(__file__).resolve().parent / "fixtures"

HAPT_ROW_COUNTS = {  # the full file, as documented in data/README.md
    "STANDING": 112566, "LAYING": 111075, "SITTING": 102370, "WALKING": 101746, "WALKING_UPSTAIRS": 96389,
    "WALKING_DOWNSTAIRS": 88888, "STAND_TO_LIE": 12866, "SIT_TO_LIE": 10149, "LIE_TO_SIT": 9698,
    "LIE_TO_STAND": 9184, "STAND_TO_SIT": 8604, "SIT_TO_STAND": 6699}


def disjoint_groups(bundle) -> bool:
    groups = [set(ds.groups.tolist()) for ds in (bundle.train, bundle.val, bundle.test)]
    return not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])


@pytest.fixture(scope="module")
def full_hapt(tmp_path_factory):
    shared_data("hapt", "hapt_subjects01-25.csv.gz")
    cfg = DataConfig(source="hapt", options={"full": True, "classes": "all12"}, split="subject")
    return data.load(cfg, cache_dir=tmp_path_factory.mktemp("cache"))


def test_full_hapt_has_926039_rows_25_subjects_and_the_documented_class_counts(full_hapt):
    info = full_hapt.info
    assert info["rows"] == 926_039 and info["subjects"] == 25
    assert info["row_class_counts"] == HAPT_ROW_COUNTS
    assert info["unlabeled_rows"] == 255_805
    assert full_hapt.class_names[:6] == ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING",
                                         "STANDING", "LAYING"] and len(full_hapt.class_names) == 12
    assert full_hapt.input_shape == (6, 128) and full_hapt.sample_rate == 50


def test_full_hapt_subject_split_shares_no_subject(full_hapt):
    assert disjoint_groups(full_hapt)
    assert len(set(full_hapt.test.groups)) >= 4


def test_full_fsdd_standard_split_is_250_test_2250_train():
    shared_data("fsdd", "recordings")
    bundle = data.load(DataConfig(source="fsdd", options={"full": True}, split="fixed", val_fraction=0.0))
    assert bundle.info["files"] == 2500
    assert len(bundle.test) == 250 and len(bundle.train) == 2250 and len(bundle.val) == 0
    takes = [int(Path(i).stem.split("_")[2]) for i in bundle.test.ids]
    assert set(takes) == {0, 1, 2, 3, 4}


def test_bundled_hapt_basic6_windows_exclude_unlabeled_and_transitions():
    bundle = data.load(DataConfig(source="hapt", split="subject"))
    info = bundle.info
    assert info["rows"] == 146_518 and info["subjects"] == 4
    assert bundle.class_names == ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING",
                                  "LAYING"]
    assert all(c > 0 for c in info["class_counts"].values())
    assert disjoint_groups(bundle)
    # the six transitions are windows of their own under all12; basic6 leaves them out
    all12 = data.load(DataConfig(source="hapt", options={"classes": "all12"}, split="subject"))
    assert all12.info["window_count"] > info["window_count"]


def test_bundled_fsdd_standard_split_and_speakers():
    bundle = data.load(DataConfig(source="fsdd", split="fixed"))
    assert bundle.class_names == [str(d) for d in range(10)]
    assert len(bundle.test) == 100 and len(bundle.train) + len(bundle.val) == 200
    assert set(bundle.train.groups) == {"george", "jackson", "lucas", "nicolas", "yweweler"}
    assert bundle.input_kind == "waveform" and bundle.input_shape == (1, 8000)
    speaker_split = data.load(DataConfig(source="fsdd", split="subject", test_groups=["george"]))
    assert set(speaker_split.test.groups) == {"george"} and disjoint_groups(speaker_split)


def test_wisdm_fixture_reports_each_broken_line_by_number():
    bundle = data.load(DataConfig(source="wisdm", path=str(FIXTURES / "wisdm_v1.1_sample.txt"), window=20,
                                  stride=10, split="subject"))
    info = bundle.info
    skipped = {s["lines"]: s["reason"] for s in info["skipped"]}
    assert set(skipped) == {"51", "91", "201"} and info["skipped_count"] == 3
    assert skipped["51"].startswith("missing fields")
    assert skipped["91"].startswith("non-numeric")
    assert skipped["201"].startswith("incomplete record")
    assert info["joined"] == [{"lines": "31-32"}]  # a record broken across two lines is rebuilt
    assert info["blank_lines"] == 3
    assert info["records"] == 357  # 360 written, 3 unusable; the trailing ",;" record is kept
    assert bundle.class_names == ["Jogging", "Sitting", "Walking"] and bundle.sample_rate == 20
    assert disjoint_groups(bundle)


def test_uea_basicmotions_keeps_its_train_test_division():
    bundle = data.load(DataConfig(source="uea", options={"name": "BasicMotions"}, split="fixed"))
    assert bundle.input_shape == (6, 100) and len(bundle.test) == 40
    assert len(bundle.train) + len(bundle.val) == 40 and len(bundle.class_names) == 4


def test_uea_unequal_lengths_are_padded():
    bundle = data.load(DataConfig(source="uea", options={"name": "JapaneseVowels"}, split="fixed"))
    assert bundle.input_shape == (12, 29) and bundle.info["padded"] and len(bundle.test) == 370
    assert np.isfinite(bundle.train.x).all()
