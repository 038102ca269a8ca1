"""In-process compute threads: one owner for torch's and the BLAS/OpenMP pools' thread counts.

    from core.threads import compute_threads, inference_threads
    with compute_threads(1, purpose="latency"):        # stable timings: one thread
        ...
    with compute_threads(inference_threads(store), purpose="classify"):
        ...                                            # the cores no running run holds

Runs are child processes and get their count from core.launch (`threads_per_process`,
`child_env`, the run row's `threads`); one run alone gets every core. This module covers work
inside a process (profiling, inference, embedding, projections) where several jobs share a
process (the dashboard: a Classify inference while a Build latency measurement runs in a
worker thread), so a save/restore per call site is not enough: the job that ends first
"restores" its previous value under the other one.

What is process-wide and what is not (measured, torch 2.13 CPU with its OpenMP backend):
`torch.set_num_threads` sets the calling thread's OpenMP count and MKL's thread-local count,
plus a global that every thread *started later* inherits (each Streamlit rerun and worker is a
new thread); other running threads keep their own. OpenBLAS (numpy, scipy, scikit-learn) has
one process-wide count.

So, with a lock and a table of the blocks now open:
- the caller's own torch/OpenMP count is n for the block and its previous value after it;
- the global default new threads inherit stays at the value it had before the first block
  opened (reset from a short helper thread, which leaves the caller's own count alone);
- the process-wide pools (OpenBLAS; torch itself on a build without OpenMP) run at the
  smallest n of the open blocks and go back to their previous value when the last one closes.
Overlapping blocks share rather than wait: waiting would put a Classify inference behind a
multi-second latency measurement, and when two jobs of one process run at once they already
split the cores, so the smaller count of a shared pool is the one that does not oversubscribe
them (OpenMP barriers stall 5-10x when threads outnumber free cores; see issue 20).
"""
from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ENV_THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class _Block:
    thread: int
    n: int
    blas: int
    purpose: str


_lock = threading.Lock()
_blocks: dict[int, _Block] = {}  # id(token) -> the open block
_baseline: dict | None = None    # what the process had before the first open block
_per_thread: bool | None = None  # torch's count is per thread (OpenMP backend)


def cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    from core.launch import cores as launch_cores
    return launch_cores()


# ---- the policy -------------------------------------------------------------------------------
def run_threads(run: dict) -> int:
    """Threads a running run holds: its row's `threads` (what core.launch gave it), else the
    OMP_NUM_THREADS its process was started with, else torch's default (every core)."""
    if run.get("threads"):
        return max(1, int(run["threads"]) * max(1, int(run.get("processes") or 1)))
    pid = run.get("owner_pid")
    if pid and int(pid) != os.getpid():
        try:
            environ = Path(f"/proc/{int(pid)}/environ").read_bytes().split(b"\0")
        except OSError:
            environ = []
        for var in ENV_THREADS:
            for entry in environ:
                if entry.startswith(var.encode() + b"="):
                    try:
                        return max(1, int(entry.split(b"=", 1)[1]))
                    except ValueError:
                        pass
    return cores()


def busy_threads(store=None) -> int:
    """Threads held now by the running runs of `store` on this host (processes that are alive)."""
    from core.store import process_alive

    try:
        store = store if store is not None else _default_store()
        running = store.list_runs(("running",)) if store is not None else []
    except Exception:  # noqa: BLE001 - a store that cannot be read holds no threads: the policy still answers
        return 0
    host = socket.gethostname()
    return sum(run_threads(r) for r in running
               if r.get("owner_host") in (None, "", host)
               and process_alive(r.get("owner_pid"), r.get("owner_host"), r.get("owner_started")))


_stores: dict = {}


def _default_store():
    """The default store (SIGSCOPE_RUNS_DIR or ./runs), opened once per path; None where it
    does not exist yet (nothing runs there, and a read must not create a runs folder)."""
    from core import paths
    from core.store import Store

    path = paths.store_path(paths.runs_dir(create=False))
    if not path.is_file():
        return None
    if str(path) not in _stores:
        _stores[str(path)] = Store(path)
    return _stores[str(path)]


def inference_threads(store=None) -> int:
    """Threads for in-process work that should not stall behind others: the cores this
    process may use, less what other processes hold (the threads of the store's running runs
    on this host, or the cores other processes keep busy (foreign_load), whichever is more:
    the runs are among those processes) and the compute_threads blocks open in other threads
    of this process; at least 1.
    store: None = the default store (SIGSCOPE_RUNS_DIR)."""
    with _lock:
        innermost = {b.thread: b.n for b in _blocks.values()}  # insertion order: the last is the innermost
    innermost.pop(threading.get_ident(), None)
    held = max(busy_threads(store), int(foreign_load() + 0.5))
    return max(1, cores() - held - sum(innermost.values()))


# ---- other processes' load: a run's own thread count -------------------------------------------------
ADAPT_ENV = "SIGSCOPE_ADAPT_THREADS"  # "1" (run processes, core.launch.child_env): follow the load; else fixed
UP_MARGIN = 0.75  # a run takes a thread back only with this much of a core free beyond its count


def _cpu_sample() -> tuple[float, float, float] | None:
    """(CPU-seconds the cores this process may use were busy, this process's own CPU-seconds,
    monotonic wall seconds) now; None where /proc/stat cannot be read (not Linux)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    try:
        mine = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except AttributeError:
        mine = None
    busy = 0
    for line in lines:
        fields = line.split()
        if not fields or not fields[0].startswith("cpu") or fields[0] == "cpu":
            continue
        if mine is not None and fields[0] not in mine:
            continue
        ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
        busy += sum(ticks) - ticks[3] - ticks[4]
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.monotonic()


class ForeignLoad:
    """Cores other processes kept busy since the last look: the busy time of this process's
    cores (/proc/stat) less its own CPU time, per wall second. A loader worker process counts
    as other: it needs a core too."""

    MIN_SECONDS = 0.5  # a shorter look is mostly clock-tick rounding

    def __init__(self) -> None:
        self._last = _cpu_sample()

    def seconds_since(self) -> float | None:
        """Wall seconds since the last look that returned a value (or since it was made)."""
        return None if self._last is None else time.monotonic() - self._last[2]

    def take(self) -> float | None:
        """The cores others used since the last look that returned a value; None where it
        cannot be measured or less than MIN_SECONDS passed (the look goes on)."""
        now = _cpu_sample()
        if now is None or self._last is None:
            return None
        busy, own, wall = (a - b for a, b in zip(now, self._last))
        if wall < self.MIN_SECONDS:
            return None
        self._last = now
        return max(0.0, (busy - own) / wall)


_watch: list = [None]  # this process's ForeignLoad, kept between calls of foreign_load


def foreign_load() -> float:
    """Cores other processes keep busy, for a job about to start in this process: measured since
    the last call when that was 0.5-30 s ago (a page classifying again), else the 1-minute load
    average (this process's own share of it is small: it has just started, or has been idle)."""
    watch = _watch[0]
    since = watch.seconds_since() if watch is not None else None
    if since is not None and since <= 30.0:
        measured = watch.take()
        if measured is not None:
            return measured
    else:
        _watch[0] = ForeignLoad()
    return load_average()


def load_average() -> float:
    """The last minute's runnable processes (os.getloadavg); 0 where the OS has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def threads_beside(others: float, most: int, now: int) -> int:
    """Compute threads for a run beside other processes that keep `others` cores busy: the
    cores left, rounded, at most `most`, at least 1. Going up needs UP_MARGIN of a core more
    than `now` has, so a run does not flap at the boundary. Measured on the 2-core machine with
    three single-thread trainings beside it: MiniRocket's ArrowHead fit took 147 CPU-s (305 s)
    on 2 threads and 10 CPU-s (24 s) on 1; OpenMP barriers wait for threads the kernel has not
    scheduled."""
    free = cores() - max(0.0, others)
    target = max(1, min(int(most), int(free + 0.5)))
    if target > now and free < now + UP_MARGIN:
        return max(1, min(int(most), now))
    return target


def adapting() -> bool:
    """Whether this process's trainer follows other processes' load: a run process does (its
    environment says so); a trainer inside another program (a test, a benchmark, the dashboard)
    keeps the threads it was given."""
    return os.environ.get(ADAPT_ENV) == "1"


# ---- the context manager ----------------------------------------------------------------------
@contextmanager
def compute_threads(n: int | None = None, purpose: str = "", blas: int | None = None) -> Iterator[int]:
    """torch (intra-op, OpenMP, MKL) on `n` threads in the calling thread for the block, and
    the process-wide BLAS pool on `blas` (default n) threads; yields n.

    n: None = the n of an enclosing block in this thread, else inference_threads().
    purpose: a word for what runs (shown by open_blocks()).
    Safe from several threads at once: another thread's torch count never changes (one started
    during the block gets the process's count, not n); the shared BLAS pool runs at the smallest
    `blas` of the open blocks; after the last block closes every count is what it was before
    the first opened."""
    import torch

    enclosing = _innermost(threading.get_ident())
    if n is None:
        n = enclosing.n if enclosing is not None else inference_threads()
    n = max(1, int(n))
    blas = max(1, int(blas if blas is not None else n))
    if enclosing is not None and (enclosing.n, enclosing.blas) == (n, blas):
        yield n  # a nested block asking for what is set already (a runner called per batch): nothing to do
        return
    token = object()
    with _lock:
        first = not _blocks
        if first:
            _capture_baseline()
        own_previous = torch.get_num_threads()
        _blocks[id(token)] = _Block(threading.get_ident(), n, blas, purpose)
        try:
            _apply(own=n)
        except BaseException:
            del _blocks[id(token)]
            _apply(own=own_previous)
            if not _blocks:
                _restore_baseline()
            raise
    try:
        yield n
    finally:
        with _lock:
            del _blocks[id(token)]
            _apply(own=own_previous)
            if not _blocks:
                _restore_baseline()


def open_blocks() -> list[dict]:
    """The blocks open now: thread, n, blas, purpose (for a status line or a test)."""
    with _lock:
        return [{"thread": b.thread, "n": b.n, "blas": b.blas, "purpose": b.purpose} for b in _blocks.values()]


def default_threads() -> int:
    """torch's count for threads started from now on (read in a fresh thread)."""
    return _in_fresh_thread(_torch_threads)


# ---- internals ------------------------------------------------------------------------------------
def _innermost(thread: int) -> _Block | None:
    """The innermost block open in `thread` (blocks are kept in the order they opened)."""
    with _lock:
        mine = [b for b in _blocks.values() if b.thread == thread]
    return mine[-1] if mine else None


# the rest is called with _lock held
def _torch_threads() -> int:
    import torch
    return torch.get_num_threads()


def _in_fresh_thread(fn, *args):
    out: list = []
    helper = threading.Thread(target=lambda: out.append(fn(*args)), name="sigscope-threads", daemon=True)
    helper.start()
    helper.join()
    return out[0] if out else None


def _set_torch(n: int) -> None:
    import torch
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)  # also clears oneDNN's primitive cache: skip when nothing changes


_controller: list = [None, -1]  # threadpoolctl's view of the loaded libraries, and len(sys.modules) then


def _controllers(user_api: str) -> list:
    """threadpoolctl's controllers of one API. Scanning the loaded libraries costs ~4 ms, so
    the scan is kept until a Python import may have loaded another (scikit-learn, scipy)."""
    import sys
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # comes with scikit-learn; without it torch's count is all there is
        return []
    if _controller[0] is None or _controller[1] != len(sys.modules):
        _controller[:] = [ThreadpoolController(), len(sys.modules)]
    return list(_controller[0].select(user_api=user_api).lib_controllers)


def _capture_baseline() -> None:
    global _baseline, _per_thread
    import torch

    if _per_thread is None:
        _per_thread = "parallel backend: OpenMP" in torch.__config__.parallel_info()
    blas = _controllers("blas")  # libraries loaded later (scikit-learn's) are seen at the next first block
    _baseline = {"torch": default_threads(), "blas": [(c, c.num_threads) for c in blas]}


def _apply(own: int) -> None:
    """The caller's count to `own`; the shared pools to the smallest n of the open blocks."""
    smallest_blas = min((b.blas for b in _blocks.values()), default=None)
    smallest = min((b.n for b in _blocks.values()), default=None)
    if _per_thread:
        _set_torch(own)
        for c in _controllers_openmp():
            c.set_num_threads(own)  # per thread too: the caller's OpenMP ICV
        if own != _baseline["torch"]:  # set_num_threads wrote the global every new thread inherits: put it back
            _in_fresh_thread(_set_torch, _baseline["torch"])
    else:
        _set_torch(smallest if smallest is not None else own)
    for controller, original in _baseline["blas"]:
        _set_pool(controller, smallest_blas if smallest_blas is not None else original)


def _set_pool(controller, n: int) -> None:
    # only on a change: resizing OpenBLAS's pool while another thread is inside a BLAS call is
    # the one racy moment left, so it happens only when the smallest count really moves
    if controller.num_threads != n:
        controller.set_num_threads(n)


def _controllers_openmp() -> list:
    if "openmp" not in _baseline:
        _baseline["openmp"] = _controllers("openmp")
    return _baseline["openmp"]


def _restore_baseline() -> None:
    global _baseline
    if not _per_thread:
        _set_torch(_baseline["torch"])
    for controller, original in _baseline["blas"]:
        _set_pool(controller, original)
    _baseline = None
