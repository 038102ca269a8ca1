"""A long-lived worker that runs hostile-input cases under an address-space limit.

The parent (tests/hostile/harness.py) writes one JSON case per line to stdin and reads one JSON
outcome per line from stdout. The worker loads each run once and keeps it, so hundreds of cases
cost one interpreter start. A case that allocates past the limit gets MemoryError (an outcome of
its own, which the tests count as a failure: work should have been bounded before allocating);
a case that hangs is killed by the parent, which then starts a fresh worker.

Outcomes:
    {"outcome": "refused", "message": "..."}       a SigscopeError: one line naming the problem
    {"outcome": "answered", "finite": bool, ...}  an answer (probabilities checked finite)
    {"outcome": "crash", "error": "...", "traceback": "..."}  anything else
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import sys
import traceback
from pathlib import Path

ADDRESS_SPACE = int(os.environ.get("HOSTILE_ADDRESS_SPACE", str(3 * 2**30)))


def _limit_memory() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = ADDRESS_SPACE if hard == resource.RLIM_INFINITY else min(ADDRESS_SPACE, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


@contextlib.contextmanager
def _environment(env: dict[str, str]):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_runs: dict[str, object] = {}


def _predictor(run_id: str):
    from core.infer import load_run
    if run_id not in _runs:
        _runs[run_id] = load_run(run_id)
    return _runs[run_id]


def _finite_prediction(pred) -> dict:
    import numpy as np
    probs = np.asarray(pred.window_probs, dtype=np.float64)
    summary = [p for _, p in pred.top_k]
    finite = bool(np.isfinite(probs).all() and all(math.isfinite(p) for p in summary)
                  and math.isfinite(pred.confidence))
    return {"outcome": "answered", "finite": finite, "label": str(pred.label), "windows": int(len(probs)),
            "notes": list(getattr(pred, "notes", []) or [])}


def run_case(case: dict) -> dict:
    op = case["op"]
    if op == "classify_bytes":  # the Classify page's route: an upload's bytes and its name
        from core.infer import classify_bytes
        with open(case["file"], "rb") as f:
            data = f.read()
        return _finite_prediction(classify_bytes(_predictor(case["run"]), data, case.get("name", "upload")))
    if op == "classify_file":  # the CLI's route: a path on disk
        from core.infer import classify_file
        return _finite_prediction(classify_file(_predictor(case["run"]), case["file"]))
    if op == "load_run_dir":  # a run folder with a hostile checkpoint, classes.json or config.json
        from core.infer import classify_file, load_run_dir
        pred = classify_file(load_run_dir(case["dir"]), case["file"])
        return _finite_prediction(pred)
    if op == "load_run":  # a run id as typed or put in a URL
        from core.infer import load_run
        load_run(case["id"])
        return {"outcome": "answered", "finite": True}
    if op == "overrides":  # `train --set KEY=VALUE ...`
        from core.config import RunConfig
        RunConfig.from_dict(case.get("base") or {}).with_overrides(case["set"])
        return {"outcome": "answered", "finite": True}
    if op == "config_json":  # a config file given to `train --config`
        from core.config import RunConfig
        RunConfig.from_json(case["text"]).validated()
        return {"outcome": "answered", "finite": True}
    if op == "profile":  # `profile --model M --shape C,T --batch B`
        from core.profile import profile_model
        report = profile_model(case["model"], case.get("hparams") or {}, input_shape=tuple(case["shape"]),
                               num_classes=case.get("classes", 6), batch_size=case.get("batch", 32),
                               measure_latency=False)
        return {"outcome": "answered", "finite": True, "params": int(report.params["total"])}
    if op == "read_csv":  # the training reader on a CSV (property tests)
        from core.data.imu_csv import DEFAULT_OPTIONS, read_streams
        rows = 0
        for values, *_ in read_streams(Path(case["file"]), {**DEFAULT_OPTIONS, **case.get("options", {})}):
            import numpy as np
            if not np.isfinite(values).all():
                return {"outcome": "answered", "finite": False}
            rows += len(values)
        return {"outcome": "answered", "finite": True, "rows": rows}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    _limit_memory()
    from core.errors import SigscopeError
    from core.infer import error_line
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        case = json.loads(line)
        try:
            with _environment(case.get("env") or {}):
                result = run_case(case)
        except SigscopeError as e:
            result = {"outcome": "refused", "message": error_line(e), "lines": len(str(e).strip().splitlines())}
        except MemoryError:
            result = {"outcome": "crash", "error": "MemoryError: the case allocated past the address-space limit",
                      "traceback": traceback.format_exc()[-3000:]}
        except BaseException as e:  # everything else is a traceback a person would have seen
            result = {"outcome": "crash", "error": f"{type(e).__name__}: {e}"[:500],
                      "traceback": traceback.format_exc()[-3000:]}
        print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
