"""Shared test set-up: every test session writes runs and caches to a temp folder,
never to ./runs, and librosa's numba cache goes somewhere writable."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Two pytest-xdist workers share the machine's cores, so each computes on one thread (set before
# torch is imported; the dashboards, runs and workers the tests start inherit it, unless a run is
# given its own thread count). With torch's default of every core per worker, each worker's
# OpenMP barriers waited on threads the other worker had taken: the suite without tests/e2e took
# 553 s that way and 423 s this way (`pytest --ignore=tests/e2e`, 2 cores, same background load).
# A person who sets OMP_NUM_THREADS keeps theirs.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402 - after the thread count, as it may import torch through plugins

pytest_plugins = ["tests.hostile.fixtures"]  # the hostile-input worker and its two runs

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()

_session_tmp = Path(tempfile.mkdtemp(prefix="sigscope-tests-"))
# Each pytest-xdist worker process gets runs and caches of its own: the workers inherit the
# controller's environment, so folders the controller chose here are replaced, not shared
# (folders a person set before running pytest are kept).
if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("SIGSCOPE_TEST_FOLDERS") == "conftest":
    for var in ("SIGSCOPE_RUNS_DIR", "SIGSCOPE_CACHE_DIR"):
        os.environ.pop(var, None)
if "SIGSCOPE_RUNS_DIR" not in os.environ:
    os.environ["SIGSCOPE_TEST_FOLDERS"] = "conftest"
os.environ.setdefault("SIGSCOPE_RUNS_DIR", str(_session_tmp / "runs"))
os.environ.setdefault("SIGSCOPE_CACHE_DIR", str(_session_tmp / "cache"))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
os.environ.setdefault("MPLCONFIGDIR", str(ROOT / ".cache" / "mpl"))
# tests read data they write to temp folders and tests/fixtures: data roots besides the product's
os.environ["SIGSCOPE_DATA_ROOTS"] = os.pathsep.join(
    filter(None, [os.environ.get("SIGSCOPE_DATA_ROOTS"), tempfile.gettempdir(), str(ROOT / "tests" / "fixtures")]))


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; the test skips with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the full shared dataset at {path} (present in CI and dev machines, not in this checkout)")
    return path


@pytest.fixture
def test_output() -> Path:
    """Folder for screenshots and reports a person should look at after the run."""
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    return out


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train and run fastest single-threaded (and the CI box is shared):
    `pytestmark = pytest.mark.usefixtures("one_thread")` in a module that wants it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
