"""A person opens Classify on the demo audio model, says a digit into the microphone and sees
what the model heard. The microphone is Chromium's fake capture device playing a bundled FSDD
recording, so the whole path runs: getUserMedia, Streamlit's recorder, its resampling to the
run's rate, the upload and the classification."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, ROOT, demo_models, screenshot, wait_for_app

pytestmark = pytest.mark.e2e
SPOKEN = ROOT / "data" / "fsdd" / "recordings" / "7_jackson_0.wav"
CAPTURE_RATE = 48_000  # Chromium's fake capture device runs at 48 kHz; an 8 kHz file is resampled first


@pytest.fixture(scope="module")
def demo_audio(server):
    return demo_models(server, "demo-audio")


def fake_microphone_wav(folder: Path) -> Path:
    """The spoken digit as 48 kHz 16-bit mono PCM, padded with half a second of silence each
    side: Chromium loops the file, so a recording holds whole utterances with pauses between."""
    import soundfile as sf
    from scipy.signal import resample_poly

    y, rate = sf.read(SPOKEN, dtype="float32")
    y = resample_poly(y, CAPTURE_RATE, rate).astype(np.float32)
    pad = np.zeros(CAPTURE_RATE // 2, np.float32)
    path = folder / "microphone_48k.wav"
    sf.write(path, np.concatenate([pad, y, pad]), CAPTURE_RATE, subtype="PCM_16")
    return path


@pytest.fixture
def mic_page(browser, tmp_path):
    """A Chromium of its own (the session one lacks the flags) whose microphone plays the digit."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}")
    capture = fake_microphone_wav(tmp_path)
    own = browser.browser_type.launch(
        executable_path=CHROMIUM, headless=True,
        args=CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                              f"--use-file-for-fake-audio-capture={capture}"])
    context = own.new_context(viewport={"width": 1400, "height": 1000}, permissions=["microphone"])
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()
    own.close()


def test_a_digit_said_into_the_microphone_is_classified(server, mic_page, test_output, demo_audio):
    page = mic_page
    page.goto(server["url"] + "/classify")
    wait_for_app(page)
    page.get_by_text("audio_resnet_attention on fsdd").first.wait_for()  # demo-audio is picked by default
    page.get_by_role("tab", name="Record from the microphone").click()
    recorder = page.locator("[data-testid='stAudioInput']")
    recorder.get_by_role("button", name="Record").click()
    recorder.get_by_role("button", name="Stop recording").wait_for()  # recording: the browser granted the mic
    page.wait_for_timeout(1500)  # a second and a half of "speech" (the looped file)
    recorder.get_by_role("button", name="Stop recording").click()
    page.locator("h3", has_text="microphone.wav").wait_for(timeout=60_000)
    wait_for_app(page)
    main = page.locator("[data-testid='stMain']")
    assert main.locator("[data-testid='stAlertContentError']").count() == 0, main.inner_text()[-2000:]
    assert "holds no information" not in main.inner_text(), "the fake microphone recorded silence"
    label = page.locator("[data-testid='stMetricValue']").first.inner_text().strip()
    assert label.isdigit(), f"a digit class, not {label!r}"
    confidence = float(page.locator("[data-testid='stMetricValue']").nth(1).inner_text())
    assert 0.0 < confidence <= 1.0
    (test_output / "microphone_prediction.txt").write_text(f"heard {SPOKEN.name} as {label} (p={confidence:.3f})\n")
    screenshot(page, test_output / "classify_microphone.png")
