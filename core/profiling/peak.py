"""The device's peak FLOP/s: a short dense matmul benchmark, measured once per machine.

    peak = device_peak("cpu", threads=1)      # Peak(device="cpu", flops={"fp32": 1.7e11}, threads=1, ...)
    peak.of("fp32")                           # 1.7e11 FLOP/s

"Peak" is the best repetition's rate of an n x n @ n x n matmul (2 n^3 FLOPs): fp32 on CPU
(n = 2048, or 1024 on a CPU too slow for 2048 within the time bound) at the given torch
thread count; on CUDA fp32 (under the process's TF32 setting, as training runs), bf16 and
fp16 (n = 8192). On CPU with one thread a repetition is timed by the calling thread's CPU
time (the matmul runs in that thread), so time slices lost to other processes do not count;
with more threads by wall clock. A busy machine still slows the matmul itself (measured on the
2-core dev machine: 89-91 GFLOP/s CPU-time rate with a test suite running, 95 quiet; 182 at 2
threads), so the load at measuring time is kept, and a peak measured busy is measured again
once the machine is quiet, keeping the better rate.

The result is cached in `<cache>/peak_flops.json` ($SIGSCOPE_CACHE_DIR or runs/cache) under a
key of host name, CPU model, torch version, device and thread count (and in-process), so a machine measures it once; delete the
file (or pass `refresh=True`) after a hardware or torch change that the key does not see.
The CPU benchmark costs under a second of CPU time (about 0.7 s at 95 GFLOP/s).
The benchmark runs on `threads` threads of the calling thread only (core.threads.compute_threads):
a job in another thread of the process keeps its own count (the Trainer asks for the current one).
"""
from __future__ import annotations

import json
import os
import platform
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

CACHE_FILE = "peak_flops.json"
CPU_SIZE = 2048
CPU_SMALL_SIZE = 1024
CPU_REPEATS = 3
CPU_BUDGET_S = 1.0  # CPU seconds the timed repetitions may use in all
CUDA_SIZE = 8192
CUDA_REPEATS = 10
BUSY_LOAD_PER_CORE = 0.5  # above this the machine was shared while measuring
CUDA_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

_MEMO: dict[str, "Peak"] = {}


@dataclass
class Peak:
    """Measured peak FLOP/s of one device at one thread count, per dtype ("fp32", "bf16", "fp16")."""

    device: str  # "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)"
    flops: dict[str, float]  # dtype -> FLOP/s
    threads: int
    measured_at: float  # unix time
    seconds: float  # wall seconds the benchmark took
    size: int = 0  # n of the n x n matmul
    key: str = ""
    load_per_core: float | None = None  # 1-minute load average / cores when it was measured
    notes: list[str] = field(default_factory=list)

    def of(self, dtype: str = "fp32") -> float | None:
        """FLOP/s for this dtype (None when it was not measured on this device)."""
        return self.flops.get(dtype)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Peak":
        return cls(device=str(data["device"]), flops={k: float(v) for k, v in data["flops"].items()},
                   threads=int(data["threads"]), measured_at=float(data["measured_at"]),
                   seconds=float(data["seconds"]), size=int(data.get("size", 0)), key=str(data.get("key", "")),
                   load_per_core=data.get("load_per_core"), notes=list(data.get("notes", [])))

    @property
    def measured_busy(self) -> bool:
        return self.load_per_core is not None and self.load_per_core > BUSY_LOAD_PER_CORE


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type


def cache_key(device: str | torch.device = "cpu", threads: int | None = None) -> str:
    """host | CPU model | torch version | device | threads: what a cached peak is valid for."""
    dev = torch.device(device)
    threads = threads or torch.get_num_threads()
    return " | ".join([socket.gethostname(), cpu_model(), f"torch {torch.__version__}", _device_name(dev),
                       f"{threads} threads"])


def device_peak(device: str | torch.device = "cpu", threads: int | None = None, *, refresh: bool = False,
                cache_dir: str | Path | None = None) -> Peak:
    """The cached peak for (this machine, device, threads), measured now when there is none.
    threads: torch CPU threads (None = the current count); cache_dir: None = the data cache folder
    ($SIGSCOPE_CACHE_DIR or runs/cache).

    A CPU peak cached while the machine was busy (load above BUSY_LOAD_PER_CORE per core) is
    measured again once the machine is quiet, keeping the better rate: peak means best."""
    dev = torch.device(device)
    threads = int(threads or torch.get_num_threads())
    key = cache_key(dev, threads)
    if not refresh and key in _MEMO:
        return _MEMO[key]
    path = cache_path(cache_dir)
    cached = None if refresh else _cached_entry(path, key)
    if cached is not None and not (dev.type == "cpu" and cached.measured_busy
                                   and (load_per_core() or 0.0) <= BUSY_LOAD_PER_CORE):
        _MEMO[key] = cached
        return cached
    peak = measure_peak(dev, threads)
    peak.key = key
    if cached is not None:  # re-measured on a quieter machine: the best of both
        peak.flops = {d: max(r, cached.flops.get(d, 0.0)) for d, r in peak.flops.items()}
    _MEMO[key] = peak
    write_cache_entry(path, key, peak.to_dict())
    return peak


def load_per_core() -> float | None:
    """The 1-minute load average per CPU core (None where the OS does not report it)."""
    try:
        return os.getloadavg()[0] / max(1, os.cpu_count() or 1)
    except (OSError, AttributeError):
        return None


def measure_peak(device: str | torch.device = "cpu", threads: int | None = None) -> Peak:
    """Run the benchmark now (no cache): fp32 on CPU; fp32, bf16 and fp16 on CUDA."""
    dev = torch.device(device)
    threads = int(threads or torch.get_num_threads())
    started, load = time.perf_counter(), load_per_core() if dev.type == "cpu" else None
    if dev.type == "cuda":
        flops, size, notes = _cuda_peak(dev), CUDA_SIZE, []
    else:
        flops, size, notes = _cpu_peak(threads)
    return Peak(device=_device_name(dev), flops=flops, threads=threads, measured_at=time.time(),
                seconds=time.perf_counter() - started, size=size, load_per_core=load, notes=notes)


def _cpu_peak(threads: int) -> tuple[dict[str, float], int, list[str]]:
    from core.threads import compute_threads

    with compute_threads(threads, purpose="peak FLOP/s"), torch.no_grad():
        # warm-up at the small size also tells whether the full size fits the time bound
        rate = _cpu_rate(CPU_SMALL_SIZE, repeats=1, threads=threads, untimed=True)
        cpu_seconds = 2 * CPU_SIZE ** 3 / rate * CPU_REPEATS * (1 if threads == 1 else threads)
        size = CPU_SIZE if cpu_seconds <= CPU_BUDGET_S else CPU_SMALL_SIZE
        best = _cpu_rate(size, repeats=CPU_REPEATS, threads=threads)
    notes = [] if size == CPU_SIZE else [f"measured at n={size}: n={CPU_SIZE} would exceed {CPU_BUDGET_S:g} CPU s"]
    return {"fp32": best}, size, notes


def _cpu_rate(n: int, repeats: int, threads: int, untimed: bool = False) -> float:
    """Best FLOP/s of `repeats` timed n x n matmuls (after one untimed one when asked: the
    first call of a process warms the library up), within CPU_BUDGET_S."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator)
    b = torch.randn(n, n, generator=generator)
    out = torch.empty(n, n)
    if untimed:
        torch.mm(a, b, out=out)
    best, spent = float("inf"), 0.0
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.thread_time()
        torch.mm(a, b, out=out)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        # one thread: the matmul runs in this thread, whose CPU time ignores other processes
        elapsed = min(wall, cpu) if threads == 1 and cpu > 0 else wall
        best = min(best, elapsed)
        spent += cpu if threads == 1 else wall * threads
        if spent > CPU_BUDGET_S:
            break
    return 2.0 * n ** 3 / max(best, 1e-9)


def _cuda_peak(device: torch.device) -> dict[str, float]:  # pragma: no cover - needs a GPU
    out: dict[str, float] = {}
    with torch.no_grad(), torch.cuda.device(device):
        for name, dtype in CUDA_DTYPES.items():
            if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
                continue
            a = torch.randn(CUDA_SIZE, CUDA_SIZE, device=device, dtype=dtype)
            b = torch.randn(CUDA_SIZE, CUDA_SIZE, device=device, dtype=dtype)
            c = torch.empty(CUDA_SIZE, CUDA_SIZE, device=device, dtype=dtype)
            for _ in range(2):  # warm-up: cuBLAS heuristics, clocks
                torch.mm(a, b, out=c)
            torch.cuda.synchronize(device)
            best = float("inf")
            for _ in range(CUDA_REPEATS):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                torch.mm(a, b, out=c)
                end.record()
                end.synchronize()
                best = min(best, start.elapsed_time(end) / 1000.0)
            out[name] = 2.0 * CUDA_SIZE ** 3 / max(best, 1e-9)
            del a, b, c
        torch.cuda.empty_cache()
    return out


# ------------------------------------------------------------------------------- the cache file

def cache_path(cache_dir: str | Path | None, name: str = CACHE_FILE) -> Path:
    """`name` in the cache folder (None: the data cache folder, $SIGSCOPE_CACHE_DIR or runs/cache)."""
    if cache_dir is None:  # a fact about the machine, kept with the other caches (not one per runs folder)
        from core.paths import cache_dir as folder

        cache_dir = folder()
    return Path(cache_dir) / name


def _cached_entry(path: Path, key: str) -> Peak | None:
    entry = read_cache(path).get(key)
    try:
        return Peak.from_dict(entry) if isinstance(entry, dict) else None
    except (KeyError, TypeError, ValueError):  # a damaged entry: measured again
        return None


def read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache_entry(path: Path, key: str, entry: dict) -> bool:
    """Add one entry to a JSON cache of machine facts (read, merge, atomic replace); False when
    the folder cannot be written (the caller keeps its in-process value only)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = read_cache(path)
        data[key] = entry
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        return False
    return True
