"""Hostile run folders, checkpoints and profiler requests (issue 18): each is refused with one
line that names the file and the problem — through the core loading function, and through
`python -m core predict`/`train --resume`/`profile` as one `error:` line with exit code 2 —
and nothing the folder declares is allocated or executed before it is checked."""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.config import DataConfig, ModelConfig, ProbeConfig, RunConfig, TrainConfig
from core.errors import ConfigError, SigscopeError
from core.infer import load_run, load_run_dir
from core.models import create
from core.store import Store
from tests.test_cli_models import run_cli

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 4


@pytest.fixture(scope="module")
def trained() -> dict:
    """A tiny resnet1d trained for one epoch on synthetic IMU data (a few seconds), as a stored run."""
    from core.jobs import run_job

    cfg = RunConfig(name="hostile-base", data=DataConfig(source="synthetic_imu", options={"per_class": 10}),
                    model=ModelConfig(name="resnet1d",
                                      hparams={"base_channels": 8, "num_stages": 2, "blocks_per_stage": 1}),
                    train=TrainConfig(epochs=1, batch_size=16, device="cpu", probes=ProbeConfig(enabled=False)))
    store = Store()
    run_id = store.create_run(cfg.to_dict(), name=cfg.name)
    assert run_job(store, run_id, cfg, device="cpu") == "completed", store.get_run(run_id)["error"]
    run = store.get_run(run_id)
    return {"id": run_id, "folder": Path(run["run_dir"]), "config": cfg}


def copy_run(trained: dict, name: str) -> tuple[str, Path]:
    """A stored, completed copy of the trained run (its own id and folder) to spoil."""
    store = Store()
    run_id = store.create_run(trained["config"].to_dict(), name=name, status="completed")
    folder = Path(store.get_run(run_id)["run_dir"])
    shutil.copytree(trained["folder"], folder, dirs_exist_ok=True)
    return run_id, folder


# ---- ways to spoil a run folder ----------------------------------------------------------------
def _edit_state(folder: Path, edit) -> None:
    path = folder / "checkpoints" / "best.pt"
    state = torch.load(path, weights_only=True)
    edit(state["model"])
    torch.save(state, path)


def _edit_classes(folder: Path, edit) -> None:
    path = folder / "classes.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _first_weight(state: dict) -> str:
    return next(k for k, v in state.items() if k.endswith("weight") and v.dim() > 1)


class WritesAMarker:
    """Unpickling this calls open(marker, "w"): a payload that would leave a file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def random_bytes(folder):
    (folder / "checkpoints" / "best.pt").write_bytes(os.urandom(20_000))


def truncated(folder):
    path = folder / "checkpoints" / "best.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(folder):
    (folder / "checkpoints" / "best.pt").write_bytes(b"")


def tensor_of_wrong_shape(folder):
    def edit(state):
        key = _first_weight(state)
        state[key] = torch.zeros(state[key].shape[0] + 3, *state[key].shape[1:])
    _edit_state(folder, edit)


def more_classes_than_the_checkpoint(folder):
    _edit_classes(folder, lambda meta: meta.update(class_names=[f"class {i}" for i in range(12)]))


def another_zoo_model(folder):
    model = create("har_transformer", (6, 128), CLASSES, hidden_ch=8, dim=16, depth=1, heads=2, mlp_dim=32)
    torch.save({"model": model.state_dict(), "model_name": "har_transformer", "epoch": 1},
               folder / "checkpoints" / "best.pt")


def missing_key(folder):
    _edit_state(folder, lambda state: state.pop(_first_weight(state)))


def extra_key(folder):
    _edit_state(folder, lambda state: state.update({"smuggled.weight\nsecond line": torch.zeros(3)}))


def nan_weights(folder):
    def edit(state):
        weight = state[_first_weight(state)].view(-1)
        weight[0], weight[1], weight[2] = float("nan"), float("inf"), float("-inf")
    _edit_state(folder, edit)


def pickle_payload_in_a_torch_archive(folder):
    torch.save({"model": {}, "payload": WritesAMarker(folder / "PWNED")}, folder / "checkpoints" / "best.pt")


def plain_pickle_payload(folder):
    (folder / "checkpoints" / "best.pt").write_bytes(pickle.dumps(WritesAMarker(folder / "PWNED")))


def huge_input_shape(folder):
    _edit_classes(folder, lambda meta: meta.update(input_shape=[6, 10**9]))


def classes_not_json(folder):
    (folder / "classes.json").write_text('{"class_names": ["a", "b"')


def classes_a_list(folder):
    (folder / "classes.json").write_text('["a", "b"]')


def classes_without_input_shape(folder):
    _edit_classes(folder, lambda meta: meta.pop("input_shape"))


def class_names_not_strings(folder):
    _edit_classes(folder, lambda meta: meta.update(class_names=[1, 2, 3, 4]))


def class_names_duplicated(folder):
    _edit_classes(folder, lambda meta: meta.update(class_names=["walk", "run", "walk", "sit"]))


def input_shape_of_strings(folder):
    _edit_classes(folder, lambda meta: meta.update(input_shape=["6", "128"]))


def config_not_json(folder):
    (folder / "config.json").write_text("model: resnet1d\n")


# (how the folder is spoiled, the file the message names, what the message says)
CASES = [
    (random_bytes, "best.pt", "not a PyTorch checkpoint archive"),
    (truncated, "best.pt", "not a PyTorch checkpoint archive"),
    (empty, "best.pt", "is empty"),
    (tensor_of_wrong_shape, "best.pt", r"has shape \(11, .*the run's model needs \(8, "),
    (more_classes_than_the_checkpoint, "best.pt", r"has shape \(4, \d+\), the run's model needs \(12, \d+\)"),
    (another_zoo_model, "best.pt", "does not fit the run's model resnet1d .*saved from a har_transformer"),
    (missing_key, "best.pt", "lacks 1 of the model's"),
    (extra_key, "best.pt", r"has 1 tensor\(s\) the model does not"),
    (nan_weights, "best.pt", "holds 3 non-finite value"),
    (pickle_payload_in_a_torch_archive, "best.pt", "refused unread"),
    (plain_pickle_payload, "best.pt", "not a PyTorch checkpoint archive"),
    (huge_input_shape, "classes.json", "6,000,000,000 values per example, over the limit of .*SIGSCOPE_MAX_INPUT"),
    (classes_not_json, "classes.json", r"not valid JSON \(line 1, column \d+\)"),
    (classes_a_list, "classes.json", "must be a JSON object"),
    (classes_without_input_shape, "classes.json", "has no input_shape"),
    (class_names_not_strings, "classes.json", r"class_names\[0\] is a number"),
    (class_names_duplicated, "classes.json", r"'walk' appears twice"),
    (input_shape_of_strings, "classes.json", "input_shape must be 2 or 3 positive whole numbers"),
    (config_not_json, "config.json", "not valid JSON"),
]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


def cli_here(capsys, *args: str) -> subprocess.CompletedProcess:
    """What `python -m core ARGS` answers, run in this process (core.__main__.main, the same
    error handling) without paying a new interpreter's imports; one case per test still goes
    through a real process."""
    capsys.readouterr()
    code, out, err = run_cli(capsys, *args)
    return subprocess.CompletedProcess(list(args), code, out, err)


def assert_one_error_line(done: subprocess.CompletedProcess) -> str:
    """Exit code 2 and exactly one `error:` line on stderr, no traceback; returns the line."""
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


# ---- loading a run: the core function and the CLI ---------------------------------------------
def test_the_untouched_copy_loads_and_answers_with_finite_probabilities(trained):
    run_id, folder = copy_run(trained, "control")
    predictor = load_run(run_id)
    x = torch.randn(3, *predictor.input_shape).numpy()
    logits = predictor.logits(x)
    assert logits.shape == (3, CLASSES) and torch.isfinite(torch.from_numpy(logits)).all()
    assert predictor.class_names == [f"class_{i}" for i in range(CLASSES)]


@pytest.mark.parametrize("spoil,file,message", CASES, ids=[c[0].__name__ for c in CASES])
def test_a_spoiled_run_folder_is_one_line_naming_the_file_and_the_problem(trained, spoil, file, message, capsys):
    run_id, folder = copy_run(trained, spoil.__name__)
    spoil(folder)
    with pytest.raises(SigscopeError, match=message) as caught:
        load_run_dir(folder)
    text = str(caught.value)
    assert "\n" not in text and file in text, text
    assert not (folder / "PWNED").exists(), "the pickle payload ran"

    args = ("predict", "--run", run_id, str(ROOT / "data" / "nothing-read.csv"))
    line = assert_one_error_line(cli(*args) if spoil is CASES[0][0] else cli_here(capsys, *args))
    assert file in line and re.search(message, line), line
    assert not (folder / "PWNED").exists(), "the pickle payload ran"


def test_the_input_limit_is_configurable_and_named(trained, monkeypatch):
    run_id, folder = copy_run(trained, "input-limit")
    monkeypatch.setenv("SIGSCOPE_MAX_INPUT_VALUES", "100")
    with pytest.raises(ConfigError, match=r"768 values per example, over the limit of 100.*SIGSCOPE_MAX_INPUT_VALUES"):
        load_run(run_id)
    monkeypatch.setenv("SIGSCOPE_MAX_INPUT_VALUES", "1000")
    assert load_run(run_id).input_shape == (6, 128)


def test_evaluate_on_a_spoiled_checkpoint_is_one_error_line(trained, capsys):
    run_id, folder = copy_run(trained, "evaluate")
    nan_weights(folder)
    line = assert_one_error_line(cli_here(capsys, "evaluate", "--run", run_id))
    assert "best.pt" in line and "non-finite" in line


# ---- resume -------------------------------------------------------------------------------
def test_resume_on_a_corrupt_last_checkpoint_is_refused_and_the_run_never_runs(trained, capsys):
    run_id, folder = copy_run(trained, "resume-corrupt")
    Store().update_run(run_id, status="interrupted")
    last = folder / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:4096])
    line = assert_one_error_line(cli_here(capsys, "train", "--resume", run_id, "--epochs", "2"))
    assert "last.pt" in line and "not a PyTorch checkpoint archive" in line
    assert Store().get_run(run_id)["status"] == "interrupted"  # untouched: never queued, never running


def test_resume_from_a_foreign_optimizer_state_is_refused_before_it_runs(trained):
    from core.jobs import requeue_for_resume

    run_id, folder = copy_run(trained, "resume-foreign")
    Store().update_run(run_id, status="cancelled")
    last = folder / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["optimizer"] = {"state": {}, "param_groups": []}
    torch.save(state, last)
    with pytest.raises(ConfigError, match="last.pt: its optimizer state does not fit the run"):
        requeue_for_resume(Store(), run_id, {"train.epochs": 2})
    assert Store().get_run(run_id)["status"] == "cancelled"


def test_a_checkpoint_spoiled_after_queueing_ends_the_run_failed_not_running(trained):
    """The job's own read of the checkpoint (the worker process path) is inside run_job's try."""
    from core.jobs import requeue_for_resume, run_job

    run_id, folder = copy_run(trained, "resume-late")
    store = Store()
    store.update_run(run_id, status="interrupted")
    config, last = requeue_for_resume(store, run_id, {"train.epochs": 2})
    last.write_bytes(os.urandom(4096))  # spoiled between the check and the job
    assert run_job(store, run_id, config, device="cpu", resume_from=last) == "failed"
    run = store.get_run(run_id)
    assert run["status"] == "failed" and "last.pt" in run["error"] and "\n" not in run["error"]


def test_resume_is_not_blocked_by_a_damaged_classes_json_it_writes_again(trained):
    from core.jobs import requeue_for_resume, run_job

    run_id, folder = copy_run(trained, "resume-classes")
    store = Store()
    store.update_run(run_id, status="interrupted")
    classes_not_json(folder)
    config, last = requeue_for_resume(store, run_id, {"train.epochs": 2})
    assert run_job(store, run_id, config, device="cpu", resume_from=last) == "completed", store.get_run(run_id)["error"]
    assert json.loads((folder / "classes.json").read_text())["class_names"] == [f"class_{i}" for i in range(CLASSES)]


# ---- the profiler's bounds ---------------------------------------------------------------------
PEAK_RSS = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))  # a runaway allocation fails, not the machine
from core.__main__ import main
code = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stdout)
sys.exit(code)
"""


@pytest.mark.parametrize("args,message", [
    (["--shape", "6,100000000"], r"on input 6x100000000 at batch 32 needs more than [\d,]+ MiB for the input batch"),
    (["--batch", "100000000", "--no-measure"], r"at batch 100000000 needs more than [\d,]+ MiB for the input batch"),
    (["--shape", "6,3000000"], r"on input 6x3000000 at batch 32 needs about [\d,]+ MiB \(the profiler's own estimate"),
])
def test_profile_refuses_a_huge_shape_or_batch_before_allocating(args, message):
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, "profile", "resnet1d", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())
    line = assert_one_error_line(done)
    assert re.search(message, line), line
    assert "over the limit of 8,192 MiB" in line and "SIGSCOPE_MAX_PROFILE_MEMORY_MIB" in line
    peak = int(done.stdout.strip().splitlines()[-1])
    assert peak < 1.5 * 2**30, f"peak RSS {peak / 2**20:.0f} MiB while refusing"


def test_profile_model_and_module_share_the_check_and_its_limit(monkeypatch):
    """The Build page and the CLI call profile_model; bench scripts call profile_module."""
    from core.profile import check_profile_memory, profile_model, profile_module

    with pytest.raises(ConfigError, match=r"har_transformer on input 6x20000 at batch 32 needs about"):
        profile_model("har_transformer", input_shape=(6, 20_000), measure_latency=False, cross_check=False)
    model = create("resnet1d", (6, 128), 6, base_channels=8)
    with pytest.raises(ConfigError, match="at batch 10000000 needs"):
        profile_module(model, (6, 128), batch_size=10**7, measure_latency=False)
    assert check_profile_memory(model, (6, 128), 32).total < 64 * 2**20  # a small request passes
    monkeypatch.setenv("SIGSCOPE_MAX_PROFILE_MEMORY_MIB", "16")
    with pytest.raises(ConfigError, match="over the limit of 16 MiB"):
        profile_model("resnet1d", input_shape=(6, 20_000), measure_latency=False, cross_check=False)


def test_the_meta_estimate_is_close_to_the_real_one():
    """The check's estimate (meta device) and the report's (real passes) agree within 15 %."""
    from core.profile import check_profile_memory, profile_model

    report = profile_model("resnet1d", {"base_channels": 16}, input_shape=(6, 256), batch_size=4, measure_latency=False,
                           cross_check=False)
    model = create("resnet1d", (6, 256), 6, base_channels=16)
    estimate = check_profile_memory(model, (6, 256), 4)
    assert abs(estimate.total - report.memory["total"]) <= 0.15 * report.memory["total"]
    with pytest.raises(ConfigError, match="for the input batch alone"):  # the input alone decides: nothing is built
        check_profile_memory(None, (6, 10**8), 32)


# ---- the pages ---------------------------------------------------------------------------------
@pytest.fixture
def page_runs(tmp_path, monkeypatch):
    """A runs folder of its own for a page test; the engine made over it is shut down after."""
    from dashboard.engine import shutdown_engines

    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    yield tmp_path / "runs"
    shutdown_engines()


def open_page(path: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=90)
    at.run()
    at.switch_page(path).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_classify_page_shows_one_message_for_a_spoiled_checkpoint(trained, page_runs):
    run_id, folder = copy_run(trained, "page")  # Store() now opens the page's runs folder
    nan_weights(folder)
    at = open_page("pages/classify.py")
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert f"Run {run_id} cannot be loaded" in errors[0] and "non-finite" in errors[0] and "best.pt" in errors[0]


def test_build_page_refuses_a_huge_custom_shape_with_the_limit(page_runs):
    at = open_page("pages/build.py")
    at.selectbox(key="build.model").set_value("resnet1d").run()
    at.selectbox(key="build.setup.resnet1d").set_value("Custom input shape").run()
    at.text_input(key="build.shape.resnet1d").set_value("6,100000000").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("cannot be built" in e.value and "over the limit of 8,192 MiB" in e.value
               and "SIGSCOPE_MAX_PROFILE_MEMORY_MIB" in e.value for e in at.error), [e.value for e in at.error]
