"""Run processes forked from a warm interpreter: torch and the training code are imported once
per job manager, not once per run.

    proc = forkserver.start(argv, env, log_path)   # a Popen-like handle, or None: start it with exec
    proc.pid; proc.poll(); proc.wait(); proc.returncode

A run process (`python -m core train --run-id ID`) used to spend about 2.5 s of CPU importing
torch and the training code before its first step, every run (bench/run_start.py). The job
manager now keeps one server process (`python -m core.forkserver`), started with a run
process's environment the first time it starts a run; the server imports that code once and
forks a child for each run. The child is what an exec'd run process was: a session of its own
(the job manager signals its process group), its output in the run's log, the run's
environment in os.environ, its thread count set, and `python -m core` run with the run's
arguments. Its exit status comes back as subprocess.Popen's returncode would (negative: the
signal that killed it), through a pipe the server writes when it reaps the child.

What is fixed when the server starts (the allocator preloaded, OpenMP's spin count, anything
a native library reads from the environment as it loads) comes from the server's environment,
so a run whose environment differs there gets a new server; only the thread counts and
Sigscope's own SIGSCOPE_* switches, read by Python as the run goes, may differ. The server
forks nothing but run processes and starts no threads of its own; it exits once its client
(the job manager's process) has gone and its children have ended, or after IDLE_SECONDS with
neither a request nor a child. torchrun runs (DDP) and the CLI's foreground child are exec'd
as before. SIGSCOPE_FORKSERVER=0 turns the server off: every run process is exec'd.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

ENV = "SIGSCOPE_FORKSERVER"
IDLE_SECONDS = 600.0  # a server with no child and no request for this long exits (a new one starts on demand)
READY_SECONDS = 120.0  # how long a new server may take to import before its runs are exec'd instead
REPLY_SECONDS = 30.0  # how long a fork may take to be answered
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# imported by the server before it forks: what `python -m core train --run-id` imports (torch._dynamo:
# the first optimizer a process builds imports it, 2.7 s of CPU)
PRELOAD = ("torch", "torch._dynamo", "core.__main__", "core.worker", "core.jobs", "core.train", "core.data.sources",
           "core.models.zoo", "core.explore.project")
MAX_MESSAGE = 1 << 20


def enabled(env: dict) -> bool:
    """Whether a run process with this environment may be forked (SIGSCOPE_FORKSERVER not off)."""
    return env.get(ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def fixed_part(env: dict) -> dict:
    """The part of an environment a server fixes when it starts (all but the thread counts and
    Sigscope's own switches)."""
    return {k: v for k, v in env.items() if k not in THREAD_VARS and not k.startswith("SIGSCOPE_")}


# ---- the client (the job manager's process) -------------------------------------------------------
class Forked:
    """A run process forked by the server, with the parts of subprocess.Popen the job manager uses."""

    def __init__(self, pid: int, status_fd: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.cpu_seconds: float | None = None  # user + system CPU of the process, once it has ended
        self._fd = status_fd
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        return self._settle(0.0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._settle(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"run process {self.pid}", timeout)
        return code

    def _settle(self, timeout: float | None) -> int | None:
        with self._lock:
            if self.returncode is None and select.select([self._fd], [], [], timeout)[0]:
                data = os.read(self._fd, 64).split()
                os.close(self._fd)
                # no status: the server died first; the process is not ours to reap, so wait for it to go
                self.returncode = int(data[0]) if data else _outlived(self.pid)
                self.cpu_seconds = float(data[1]) if len(data) > 1 else None
            return self.returncode

    def __del__(self) -> None:
        if self.returncode is None:
            try:
                os.close(self._fd)
            except OSError:
                pass


def _outlived(pid: int) -> int:
    """The return code for a run process whose server died before it: 1 once it has gone."""
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return 1
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)
    return 1


class _Server:
    def __init__(self, env: dict, idle: float = IDLE_SECONDS) -> None:
        self.fixed = fixed_part(env)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        self.proc = subprocess.Popen([sys.executable, "-m", "core.forkserver", str(theirs.fileno()), str(idle)],
                                     pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        ours.settimeout(REPLY_SECONDS)  # a server that stops answering is replaced (start's retry)
        ready, _, _ = select.select([ours], [], [], READY_SECONDS)
        if not ready or json.loads(ours.recv(MAX_MESSAGE) or b"{}").get("ready") is not True:
            self.close()
            raise OSError("the fork server did not start")

    def fork(self, argv: list[str], env: dict, log_path: str) -> Forked:
        self.sock.send(json.dumps({"argv": argv, "env": env, "log": str(log_path), "cwd": os.getcwd()}).encode())
        message, fds, _, _ = socket.recv_fds(self.sock, MAX_MESSAGE, 1)
        reply = json.loads(message or b"{}")
        if "pid" not in reply or not fds:
            for fd in fds:
                os.close(fd)
            raise OSError(reply.get("error") or "the fork server has gone")
        return Forked(int(reply["pid"]), fds[0])

    def close(self) -> None:
        self.sock.close()  # the server exits once its children have ended
        if self.proc.poll() is None:
            threading.Thread(target=self.proc.wait, daemon=True).start()  # reap it when it goes


_server: list = [None]
_broken: list = []  # why a server could not start in this process: its runs are exec'd from then on
idle_seconds = IDLE_SECONDS  # what a new server is started with (a test shortens it)
_server_lock = threading.Lock()


def start(argv: list[str], env: dict, log_path) -> Forked | None:
    """Fork a run process `python -m core ARGS` (argv: [python, "-m", "core", ...]) from this
    process's server, its output appended to `log_path`; None when it should be exec'd instead
    (the server is off, cannot start, or argv is not a plain `-m core` command)."""
    if not enabled(env) or len(argv) < 3 or argv[1:3] != ["-m", "core"]:
        return None
    with _server_lock:
        for attempt in range(2):  # a server that went idle and exited is started again once
            server = _ready_server(env)
            if server is None:
                return None
            try:
                return server.fork(argv[3:], env, str(log_path))
            except OSError as error:
                server.close()
                _server[0] = None
                if attempt:
                    print(f"sigscope: starting the run process with exec ({error})", file=sys.stderr)
    return None


def _ready_server(env: dict) -> _Server | None:
    """This process's server for `env`: started (again) when there is none, it has exited or
    `env` differs in what a server fixes; None once one could not start here."""
    server = _server[0]
    if server is not None and server.fixed == fixed_part(env) and server.proc.poll() is None:
        return server
    if server is not None:
        server.close()
    _server[0] = None
    if not _broken:
        try:
            _server[0] = _Server(_server_env(env), idle_seconds)
        except OSError as error:
            _broken.append(str(error))
            print(f"sigscope: run processes are exec'd from now on ({error})", file=sys.stderr)
    return _server[0]


def _server_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if k not in THREAD_VARS}


def shutdown() -> None:
    """Let this process's server go (it exits once its running children end)."""
    with _server_lock:
        if _server[0] is not None:
            _server[0].close()
            _server[0] = None


# ---- the server -----------------------------------------------------------------------------------
def serve(sock: socket.socket, idle: float = IDLE_SECONDS) -> None:
    import importlib

    from core.__main__ import build_parser

    for module in PRELOAD:
        importlib.import_module(module)
    build_parser()  # every command module, as `python -m core` imports them
    sock.send(json.dumps({"ready": True}).encode())
    children: dict[int, int] = {}  # pid -> the status pipe's write end
    client = True
    idle_since = time.monotonic()
    while client or children:
        readable = select.select([sock] if client else [], [], [], 0.2)[0]
        _reap(children)
        if children:
            idle_since = time.monotonic()
        if readable:
            try:
                message = sock.recv(MAX_MESSAGE)
            except OSError:
                message = b""
            if not message:
                client = False
                continue
            idle_since = time.monotonic()
            status_r, status_w = os.pipe()
            try:
                pid = _fork(json.loads(message), sock, children, status_r, status_w)
            except Exception as error:  # noqa: BLE001 - the client execs this run instead
                os.close(status_r)
                os.close(status_w)
                sock.send(json.dumps({"error": f"{type(error).__name__}: {error}"}).encode())
                continue
            children[pid] = status_w
            try:
                socket.send_fds(sock, [json.dumps({"pid": pid}).encode()], [status_r])
            except OSError:
                client = False
            os.close(status_r)
        elif client and not children and time.monotonic() - idle_since > idle:
            return


def _reap(children: dict[int, int]) -> None:
    while children:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = children.pop(pid, None)
        if fd is not None:
            try:
                cpu = usage.ru_utime + usage.ru_stime
                os.write(fd, f"{os.waitstatus_to_exitcode(status)} {cpu:.3f}".encode())
            except OSError:
                pass
            os.close(fd)


def _fork(request: dict, sock: socket.socket, children: dict[int, int], status_r: int, status_w: int) -> int:
    argv, env, log, cwd = list(request["argv"]), dict(request["env"]), request["log"], request["cwd"]
    log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pid = os.fork()
    if pid:
        os.close(log_fd)
        return pid
    code = 1
    try:  # the run process: from here on it must end in os._exit
        os.close(status_r)
        os.close(status_w)
        for fd in children.values():
            os.close(fd)
        sock.close()
        os.setsid()
        _title(b"sigscope-run")
        for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(devnull)
        os.close(log_fd)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        _threads(env)
        sys.argv = [sys.executable, *argv]
        from core.__main__ import main
        code = main(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001 - printed into the run's log, as an exec'd process would
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        try:  # what the interpreter does at exit, as multiprocessing's forked processes do it
            threading._shutdown()  # joins non-daemon threads
            import atexit
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) and 0 <= code < 256 else 1)
    return 0  # not reached


def _title(name: bytes) -> None:
    """The process's name in `ps -o comm`, top and htop (its command line stays the server's)."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _threads(env: dict) -> None:
    """The run's thread count, which an exec'd process would have read from its environment."""
    count = env.get("OMP_NUM_THREADS")
    if not count or not count.isdigit() or int(count) < 1:
        return
    import torch

    torch.set_num_threads(int(count))
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(int(count), user_api="blas")
    except ImportError:
        pass


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])), float(sys.argv[2]) if len(sys.argv) > 2 else IDLE_SECONDS)
