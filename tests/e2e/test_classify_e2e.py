"""A person trains the demo audio model, opens Classify, drops a spoken digit on it and sees
the prediction, the class band over time and the attention heat map; bad files in the same
batch each get a message and the page keeps working."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, assert_not_blank, demo_models, wait_for_app

pytestmark = pytest.mark.e2e
RECORDING = ROOT / "data" / "fsdd" / "recordings" / "3_george_0.wav"


@pytest.fixture(scope="module")
def demo_audio(server):
    return demo_models(server, "demo-audio")


def _upload(page, *paths: Path) -> None:
    page.locator("[data-testid='stFileUploader'] input[type='file']").first.set_input_files([str(p) for p in paths])


def test_classify_a_real_recording_shows_prediction_and_attention(server, page, test_output, demo_audio):
    page.goto(server["url"] + "/classify")
    wait_for_app(page)
    page.get_by_text("audio_resnet_attention on fsdd").first.wait_for()  # demo-audio is picked by default
    _upload(page, RECORDING)
    page.get_by_text("Prediction").first.wait_for(timeout=60_000)
    page.get_by_text("Attention each second receives").first.wait_for(timeout=60_000)
    wait_for_app(page)
    assert page.locator("[data-testid='stMetricValue']").first.inner_text().strip().isdigit()  # a digit class
    assert page.locator(".js-plotly-plot").count() >= 4  # signal, spectrogram, top-k, attention heat maps
    assert page.locator("[data-testid='stAudio']").count() == 1
    page.set_viewport_size({"width": 1400, "height": 2800})  # the whole result, attention included
    page.get_by_text("Attention each second receives").first.scroll_into_view_if_needed()
    wait_for_app(page)
    shot = test_output / "classify.png"
    page.screenshot(path=str(shot), full_page=True)
    assert_not_blank(shot)


def test_a_batch_with_bad_files_lists_each_problem_and_keeps_serving(server, page, test_output, demo_audio, tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("these are my notes, not audio")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    hostile = tmp_path / "..%2F..%2Fx.wav"
    hostile.write_bytes(RECORDING.read_bytes())
    page.goto(server["url"] + "/classify")
    wait_for_app(page)
    _upload(page, RECORDING, fake, empty, hostile)
    page.get_by_text("Batch: 4 files").wait_for(timeout=60_000)
    page.get_by_text("is not audio despite its .wav name").first.wait_for()
    page.get_by_text("the file is empty").first.wait_for()
    page.get_by_text("Download predictions (CSV)").wait_for()
    wait_for_app(page)
    shot = test_output / "classify_batch.png"
    page.screenshot(path=str(shot), full_page=True)
    assert_not_blank(shot)
    page.goto(server["url"] + "/classify")  # the server is still serving
    wait_for_app(page)
    page.get_by_text("Upload a recording").first.wait_for()


def test_a_batch_of_one_new_speaker_can_adapt_the_model_to_it(server, page, test_output, demo_audio):
    """Twelve recordings of one speaker: the 'Adapt to these recordings' switch re-estimates the
    model's BatchNorm statistics on them and says so; the batch is classified again with it."""
    clips = sorted((ROOT / "data" / "fsdd" / "recordings").glob("*_jackson_*.wav"))[::5][:12]
    assert len(clips) == 12
    page.goto(server["url"] + "/classify")
    wait_for_app(page)
    _upload(page, *clips)
    page.get_by_text("Batch: 12 files").wait_for(timeout=120_000)
    wait_for_app(page)
    assert page.get_by_text("BatchNorm statistics adapted").count() == 0
    page.get_by_text("Adapt to these recordings").click()
    page.get_by_text("BatchNorm statistics adapted to 12 windows of 12 file(s)").first.wait_for(timeout=120_000)
    wait_for_app(page)
    page.get_by_text("Batch: 12 files").wait_for()
    page.set_viewport_size({"width": 1400, "height": 1900})  # the switch, its report and the batch table
    wait_for_app(page)
    shot = test_output / "classify_adapted.png"
    page.screenshot(path=str(shot), full_page=True)
    assert_not_blank(shot)
