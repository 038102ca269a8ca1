"""The parent side of the hostile-input worker: send a case, get its outcome within a bound.

A case that does not answer within `timeout` seconds is a hang: the worker is killed and a
fresh one started for the next case. A worker that dies (a crash in native code, the
address-space limit) is restarted the same way, and the case is reported as what killed it.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

WORKER = Path(__file__).with_name("worker.py")
CASE_TIMEOUT = 60.0  # seconds: a bound for a hang, far above what any case needs on a busy machine


class HostileWorker:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=self.env,
                                     cwd=str(Path(__file__).resolve().parents[2]))
        ready = self._read(CASE_TIMEOUT * 2)
        if not ready or not ready.get("ready"):
            raise RuntimeError(f"the hostile-input worker did not start: {ready}")

    def _read(self, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                line = self.proc.stdout.readline()
                return json.loads(line) if line else {"outcome": "crash", "error": f"the worker died "
                                                      f"(exit {self.proc.wait()})"}

    def run(self, case: dict, timeout: float = CASE_TIMEOUT) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        started = time.process_time()
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        result = self._read(timeout)
        if result is None:
            self.close()
            self.restarts += 1
            return {"outcome": "hang", "error": f"no answer within {timeout:g} s"}
        if result.get("error", "").startswith("the worker died"):
            self.proc = None
            self.restarts += 1
        result["parent_cpu"] = time.process_time() - started
        return result

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
