"""Runs as processes: the command that runs one stored run in a child process (one process,
or N ranks under torchrun), how many threads it gets, whether it fits in memory now, how it
is stopped, and how its end is recorded when the process could not record it itself.

    cmd = worker_command(run_id, store_path, threads=2)                 # python -m core train --run-id ...
    cmd = worker_command(run_id, store_path, threads=1, processes=2)    # python -m torch.distributed.run ...
    proc = start_run_process(cmd, child_env(threads), log_path, "cpu")  # forked (core.forkserver) or exec'd
    finish(store, run_id, proc.returncode, cancelled=False, log_path)   # failed / cancelled with the reason

The child writes its own status through the store as any run does. This module covers what
it cannot: a process killed by the kernel (out of memory, SIGKILL) or crashing in native code
ends `failed` with its exit status and the last lines of its log; a rank that raised names
its error in `<run>/rank-errors/rank<R>.txt`, which becomes the run's message; a cancelled run
whose process had to be killed after the grace period ends `cancelled`.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError

LOG_NAME = "train.log"
RANK_ERRORS = "rank-errors"
GRACE_SECONDS = 30.0  # a cancelled run's process gets this long to stop at a step boundary
DEFAULT_RDZV_TIMEOUT = 60  # seconds every node has to join a multi-node run
REACH_SECONDS = float(os.environ.get("SIGSCOPE_REACH_SECONDS", "30"))  # how long a node tries to reach node 0


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_process(processes: int = 1, concurrent: int = 1) -> int:
    """Threads for each process of a run: the cores shared by the runs the queue lets run at
    once (`concurrent`) and by this run's processes. One run alone on a CPU machine uses every
    core; two at once split them."""
    return max(1, cores() // max(1, concurrent * processes))


def max_processes(device: str = "auto") -> int:
    """How many processes one run may sensibly have here: one per GPU, else one per core."""
    import torch
    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.device_count()
    return cores()


# ---- the command --------------------------------------------------------------------------------
def worker_command(run_id: str | None, store_path: str | Path | None, threads: int, processes: int = 1,
                   nnodes: int = 1, node_rank: int = 0, rdzv_endpoint: str | None = None,
                   rdzv_timeout: int = DEFAULT_RDZV_TIMEOUT, resume: str | Path | None = None,
                   device: str | None = None) -> list[str]:
    """The argv that trains a stored run: `python -m core train --run-id ID` for one process,
    or torchrun (`python -m torch.distributed.run`) with `processes` ranks per node for DDP.
    A node other than 0 joins with no run id: its ranks get the config from rank 0."""
    worker = ["-m", "core", "train", "--threads", str(int(threads))]
    worker += ["--run-id", run_id] if run_id else ["--join"]
    if store_path is not None:
        worker += ["--store", str(store_path)]
    if resume is not None:
        worker += ["--resume-checkpoint", str(resume)]
    if device:
        worker += ["--device", device]
    if processes <= 1 and nnodes <= 1:
        return [sys.executable, *worker]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(int(processes)),
                "--max-restarts", "0"]
    if nnodes <= 1:
        launcher += ["--standalone"]
    else:
        launcher += ["--nnodes", str(int(nnodes)), "--node-rank", str(int(node_rank)), "--rdzv-backend", "c10d",
                     "--rdzv-endpoint", str(rdzv_endpoint), "--rdzv-conf", f"join_timeout={int(rdzv_timeout)}",
                     "--rdzv-id", f"sigscope-{rdzv_endpoint}"]
    return launcher + worker  # torchrun runs "-m core train ..." in each rank


def check_rendezvous(endpoint: str | None, nnodes: int, node_rank: int) -> tuple[str, int] | None:
    """(host, port) of a multi-node run's rendezvous, checked before any process starts:
    node 0 must be able to listen on the port (not in use), every other node must reach it.
    ConfigError says what is wrong; None for a one-node run."""
    if nnodes <= 1:
        if endpoint:
            raise ConfigError("--rdzv-endpoint is for runs over several machines; give --nnodes too")
        return None
    if not 0 <= node_rank < nnodes:
        raise ConfigError(f"--node-rank {node_rank}: a run over {nnodes} machines has node ranks 0..{nnodes - 1}")
    if not endpoint or ":" not in endpoint:
        raise ConfigError(f"--rdzv-endpoint {endpoint!r}: give HOST:PORT of node 0, e.g. 10.0.0.5:29500")
    host, _, port_text = endpoint.rpartition(":")
    try:
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--rdzv-endpoint {endpoint!r}: the port must be a number in 1-65535") from None
    if node_rank == 0:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("", port))
            except OSError as e:
                raise ConfigError(f"--rdzv-endpoint {endpoint}: node 0 cannot listen on port {port} ({e.strerror}); "
                                  "pick a free port and give the same one to every node") from None
        return host, port
    deadline = time.monotonic() + min(30, REACH_SECONDS)
    last = None
    while time.monotonic() < deadline:  # node 0 may still be starting
        try:
            with socket.create_connection((host, port), timeout=3):
                return host, port
        except OSError as e:
            last = e
            time.sleep(1)
    raise ConfigError(f"--rdzv-endpoint {endpoint}: cannot reach node 0 there within {min(30, REACH_SECONDS):g} s "
                      f"({last}); start node 0 "
                      "first and check the address and firewall")


# ---- memory ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryCheck:
    """Whether a run fits in the memory free now: the profiler's estimate of one training
    step (per process; on CPU its resident memory with CPU_HEADROOM, expected_peak) against what the
    device has free, less what runs started before it are still expected to take (`reserved`:
    a run that has just started has not grown to its peak yet)."""

    needed: int
    free: int | None
    where: str
    reserved: int = 0

    @property
    def fits(self) -> bool:
        return self.free is None or self.needed <= self.free - self.reserved

    @property
    def reason(self) -> str:
        ahead = f", {_size(self.reserved)} of it still to be taken by runs already started" if self.reserved else ""
        return (f"held: needs about {_size(self.needed)} ({self.where}, the profiler's estimate) and "
                f"{_size(self.free or 0)} is free{ahead}; it starts when memory frees up (or cancel it)")


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def free_memory(device: str) -> int | None:
    """Bytes free on a device now (None when it cannot be told)."""
    import torch
    if device.startswith("cuda") and torch.cuda.is_available():
        index = int(device.split(":")[1]) if ":" in device else 0
        return int(torch.cuda.mem_get_info(index)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


_ESTIMATES: dict[str, int] = {}


def memory_needed(config) -> int:
    """The profiler's estimate of a run's training memory per process (bytes), at the input
    the config alone tells (channels from the source where known, else the model's example)."""
    import json

    from core.config_checks import static_length
    from core.models import registry
    from core.profiling.memory import estimate_training_memory

    key = json.dumps([config.model.to_dict(), config.data.to_dict(), config.train.batch_size,
                      config.train.processes, config.optim.name, config.train.amp], sort_keys=True, default=str)
    if key not in _ESTIMATES:
        spec = registry.spec(config.model.name)
        shape = list(spec.default_input)
        length = static_length(config)
        if length is not None:
            shape[-1] = length
        model = registry.create(config.model.name, tuple(shape), 10, **config.model.hparams)
        batch = max(1, config.train.batch_size // max(1, config.train.processes))
        estimate = estimate_training_memory(model, tuple(shape), batch, config.optim.name, config.train.amp,
                                            config.train.grad_checkpointing)
        _ESTIMATES[key] = int(estimate.total)
    return _ESTIMATES[key]


# A CPU run is admitted only where its expected resident memory (core.runtime.resident_bytes:
# the tensor estimate with its allocator's overhead) and this much more is free: the same
# model's RSS growth varied up to 8 % between measurements (meg_resnet 240-280 MiB). On CUDA the
# estimate is what the caching allocator reports.
CPU_HEADROOM = 1.15


def memory_check(config, device: str, reserved: int = 0) -> MemoryCheck:
    """reserved: bytes that runs already started on the device are still expected to take."""
    needed = expected_peak(config, device)
    where = f"{config.train.processes} processes" if config.train.processes > 1 else "one process"
    return MemoryCheck(needed, free_memory(device), where, reserved)


def expected_peak(config, device: str) -> int:
    """Bytes a run is expected to take at its peak on `device` (all its processes)."""
    from core.runtime import resident_bytes

    processes = max(1, config.train.processes)
    if str(device).startswith("cuda"):
        return int(memory_needed(config) * processes)
    return int(resident_bytes(memory_needed(config) * processes, processes=processes) * CPU_HEADROOM)


def process_rss(pid: int | None) -> int | None:
    """Resident bytes of a process on this machine now (None when it cannot be read)."""
    try:
        with open(f"/proc/{int(pid)}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, TypeError, ValueError, IndexError):
        return None


# ---- stopping and the end -----------------------------------------------------------------------
def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send `sig` to the child's process group (it was started in a session of its own)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop(proc, owner_pid: int | None, grace: float = GRACE_SECONDS) -> bool:
    """Ask a run's process to stop after its current step (SIGTERM to the process that trains,
    rank 0 under torchrun, which tells the other ranks at the step's end); after `grace`
    seconds kill the whole process group. True when it had to be killed."""
    target_in_group = owner_pid is not None and _pgid(owner_pid) == proc.pid
    if target_in_group:
        try:
            os.kill(owner_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    else:  # still starting (loading data): its own handler sets the same flag
        signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.poll() is not None and not group_alive(proc.pid):
            return False
        time.sleep(0.2)
    signal_group(proc, signal.SIGKILL)
    proc.wait()
    return True


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def signal_run(store, run_id: str, sig: int = signal.SIGTERM) -> str:
    """Ask the process that trains a run on this machine to stop (SIGTERM: after its current
    step); returns a sentence saying what happened (a run of another host cannot be reached)."""
    from core.store import ACTIVE_STATUSES, process_alive

    run = store.get_run(run_id)
    if run is None:
        return f"no run {run_id}"
    if run["status"] not in ACTIVE_STATUSES:
        return f"{run_id} has already ended ({run['status']})"
    pid = run.get("owner_pid")
    if run["status"] == "running" and pid and pid != os.getpid() and run.get("owner_host") == socket.gethostname() \
            and process_alive(pid, run.get("owner_host"), run.get("owner_started")):
        try:
            os.kill(int(pid), sig)
            return f"asked {run_id}'s process (pid {pid}) to stop after its current step"
        except OSError as e:
            return f"could not signal {run_id}'s process (pid {pid}): {e}"
    return (f"{run_id} belongs to another process (pid {pid} on {run.get('owner_host')}); "
            f"stop it there (Ctrl-C ends a CLI run as cancelled)")


def rank_error_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / RANK_ERRORS


def record_rank_error(run_dir: str | Path | None, rank: int, message: str) -> None:
    """A rank's one-line error, where the launcher finds it (rank-errors/rank<R>.txt)."""
    if run_dir is None:
        return
    folder = rank_error_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"rank{rank}.txt").write_text(message)


def clear_rank_errors(run_dir: str | Path | None) -> None:
    """Forget the rank errors of an earlier attempt (a resumed run starts clean)."""
    import shutil
    if run_dir is not None:
        shutil.rmtree(rank_error_dir(run_dir), ignore_errors=True)


def rank_errors(run_dir: str | Path | None) -> list[str]:
    """'rank R: message' for each rank that recorded an error, the first to fail first (the
    others usually failed because it did: a closed connection, a collective that timed out)."""
    if run_dir is None or not rank_error_dir(run_dir).is_dir():
        return []
    files = sorted(rank_error_dir(run_dir).glob("rank*.txt"), key=lambda p: (p.stat().st_mtime_ns, p.stem))
    return [f"rank {p.stem[4:]}: {p.read_text().strip()}" for p in files if p.read_text().strip()]


def log_tail(path: str | Path | None, lines: int = 12) -> str:
    """The last lines of a run's log (torchrun's noise left in: it often names the cause)."""
    if path is None or not Path(path).is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 16_384))
        text = f.read().decode("utf-8", "replace")
    return "\n".join(text.strip().splitlines()[-lines:])


KNOWN_CAUSES = (  # what a log's last lines mean, said plainly
    ("RendezvousTimeoutError", "the other machines did not join within --rdzv-timeout; start every node with the same "
                               "--rdzv-endpoint and --nnodes"),
    ("RendezvousConnectionError", "the rendezvous endpoint could not be reached; check --rdzv-endpoint"),
    ("EADDRINUSE", "the rendezvous port is in use; pick another --rdzv-endpoint port"),
)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else "?"
        hint = " (often the kernel's out-of-memory killer)" if -returncode == signal.SIGKILL else ""
        return f"the training process was killed by {name} (signal {-returncode}){hint}"
    return f"the training process exited with status {returncode}"


def finish(store, run_id: str, returncode: int, cancelled: bool, killed: bool = False,
           log_path: str | Path | None = None) -> str:
    """Record how a run's process ended where the process could not: a run still marked
    queued/running, a crash, a rank's error. Returns the run's final status."""
    run = store.get_run(run_id)
    if run is None:
        return "deleted"
    errors = rank_errors(run.get("run_dir"))
    active = run["status"] in ("queued", "running", "interrupted")
    if cancelled and (active or killed or returncode != 0):
        message = "cancelled" + (f"; the process did not stop within {GRACE_SECONDS:.0f} s and was killed"
                                 if killed else "")
        _end(store, run_id, "cancelled", message)
        return "cancelled"
    if errors and (active or returncode != 0 or run["status"] == "failed"):
        _end(store, run_id, "failed", errors[0] + (f" (and {len(errors) - 1} more rank(s))" if len(errors) > 1 else ""))
        return "failed"
    if returncode != 0 and (active or run["status"] == "completed"):
        tail = log_tail(log_path)
        cause = next((why for needle, why in KNOWN_CAUSES if needle in tail), "")
        _end(store, run_id, "failed", describe_exit(returncode) + (f": {cause}" if cause else "")
             + (f"; last log lines:\n{tail}" if tail else ""))
        return "failed"
    if active:
        _end(store, run_id, "failed", "the training process ended without recording how; see its log")
        return "failed"
    return run["status"]


def _end(store, run_id: str, status: str, message: str) -> None:
    store.update_run(run_id, status=status, error=message, finished_at=time.time())
    store.add_event(run_id, message, "error" if status == "failed" else "warning")


# ---- starting a run's process -----------------------------------------------------------------------
def start_run_process(cmd: list[str], env: dict, log_path: Path, device: str):
    """Start a stored run's process (a worker_command) with its output appended to `log_path`:
    forked from this process's fork server (core.forkserver: torch already imported) when it is
    one CPU process, else exec'd. The handle has Popen's pid, poll(), wait() and returncode."""
    from core import forkserver

    if device == "cpu":  # the server never touches CUDA, but a CUDA run is started as it always was
        proc = forkserver.start(cmd, env, log_path)
        if proc is not None:
            return proc
    with open(log_path, "ab") as log:
        return spawn(cmd, env, log)


# ---- running a child in the foreground (the CLI) ---------------------------------------------------
def spawn(cmd: list[str], env: dict | None = None, log=None) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log if log is not None else subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env or child_env())


SPIN_COUNT = "10000"


def child_env(threads: int | None = None) -> dict:
    """A run process's environment: its allocator (core.runtime.allocator_env), its thread count
    for every BLAS/OpenMP pool, and a short OpenMP spin before a waiting thread sleeps
    (GOMP_SPINCOUNT, unless set). Measured on this 2-core machine, resnet1d training steps at
    batch 64 with 2 threads (bench/watched_training.py measures whole runs beside Chromium):
      alone:                          default 66-76 ms/step, GOMP_SPINCOUNT=10000 65-83 ms/step
      beside two busy processes:      default 1038 ms/step,  GOMP_SPINCOUNT=10000 145 ms/step
    libgomp's default spins up to 300,000 times at each barrier, so when the server and a browser
    share the cores, a thread spins while the thread it waits for is not scheduled: 10x slower.
    (OMP_WAIT_POLICY=PASSIVE, which never spins, made an uncontended epoch 2.3x slower.)"""
    from core.runtime import allocator_env
    from core.threads import ADAPT_ENV

    env = allocator_env(dict(os.environ))  # jemalloc where the machine has it (core.runtime)
    env.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
    env.setdefault(ADAPT_ENV, "1")  # a run's threads follow other processes' load (core.threads.threads_beside)
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    return env


def _tee(proc: subprocess.Popen, log_path: Path | None) -> threading.Thread:
    def copy() -> None:
        log = open(log_path, "ab") if log_path is not None else None
        try:
            for line in iter(proc.stdout.readline, b""):
                sys.stderr.buffer.write(line)
                sys.stderr.flush()
                if log is not None:
                    log.write(line)
                    log.flush()
        finally:
            if log is not None:
                log.close()
    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


def run_foreground(store, run_id: str, cmd: list[str], threads: int, processes: int) -> str:
    """Run a stored run's processes from the CLI: their output on this terminal and in the run's
    log; Ctrl-C or SIGTERM stops them after the current step (killed after the grace period)."""
    run = store.get_run(run_id)
    log_path = Path(run["run_dir"]) / LOG_NAME
    store.update_run(run_id, threads=threads, processes=processes, log_path=str(log_path))
    clear_rank_errors(run["run_dir"])
    proc = spawn(cmd, child_env(threads))
    copier = _tee(proc, log_path)
    cancelled = killed = False
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while proc.poll() is None:
            time.sleep(0.2)
    except KeyboardInterrupt:
        cancelled = True
        print("stopping after the current step (Ctrl-C again kills it)...", file=sys.stderr, flush=True)
        killed = stop(proc, (store.get_run(run_id) or {}).get("owner_pid"))
    finally:
        signal.signal(signal.SIGTERM, previous)
    copier.join(timeout=5)
    return finish(store, run_id, proc.returncode, cancelled, killed, log_path)


def run_and_wait(cmd: list[str]) -> int:
    """Run a command in its own session with its output here; Ctrl-C stops it. Its exit code."""
    proc = spawn(cmd)
    copier = _tee(proc, None)
    try:
        proc.wait()
    except KeyboardInterrupt:
        stop(proc, None)
    copier.join(timeout=5)
    return proc.returncode
