"""Keep freed memory in the process: glibc malloc tuning applied at start-up.

    from core.runtime import tune_malloc
    tune_malloc()        # {"applied": True, "settings": {...}} or {"applied": False, "reason": "..."}

Why: glibc serves large requests (activation buffers of a training step) with mmap and hands
them back to the kernel on free, so every step faults the same memory in again (measured on
`har_transformer` at batch 64: 30 % of a CPU step in system time, ~640 MiB re-faulted per step).
glibc's own dynamic threshold stops at 32 MiB (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit), and the
largest buffers are above it (64 x 129 x 1024 floats = 33.8 MB), so raising the threshold is not
enough: mmap is switched off (M_MMAP_MAX = 0) and the heap is never trimmed (M_TRIM_THRESHOLD
at its maximum), so freed buffers are reused by the next step. The cost: the process keeps its
peak heap until it exits (a training worker does exactly that anyway).

`mallopt` acts on the running process (no re-exec, no environment variables read at start),
is process-wide, and cannot be cleanly undone, hence one call per process; later calls return
the first call's answer. SIGSCOPE_MALLOC=default leaves glibc's behaviour alone (for
benchmarks and for anyone who wants it back).

Run processes get a better allocator where the machine has one: `allocator_env` starts them
with jemalloc preloaded (Debian's libjemalloc2) and configured never to hand freed pages back
(JEMALLOC_CONF). Measured at batch 32, one thread, against the memory estimate and the tuned
glibc (bench/profile_accuracy.py --rss; bench/throughput.py): tuned glibc keeps the faults away
but fragments its heap, so peak RSS is 1.2-1.9x the tensors a step holds; jemalloc with its
default decay matches the tensors but hands pages back (har_transformer 196 k faults and 555 ms
of system time per step); with decay off and no separate arena for large requests it matches
the tensors (resnet1d 18.1 MiB RSS against an 18.8 MiB estimate, har_transformer 231 against
222, minirocket 30.4 against 27.4) at tuned glibc's speed (970 against 1,030-1,130 ms per
har_transformer step, 0 faults). SIGSCOPE_MALLOC=glibc keeps run processes on tuned glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import threading

# glibc's malloc.h (checked against /usr/include/malloc.h, glibc 2.36)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

ENV = "SIGSCOPE_MALLOC"  # "tuned" (default: jemalloc for runs where present), "glibc" or "default"

# what is set, in order: no mmapped chunks (so nothing large is unmapped on free), never trim
# the heap top, grow the heap 64 MiB at a time (fewer brk calls)
SETTINGS: tuple[tuple[str, int, int], ...] = (
    ("M_MMAP_MAX", M_MMAP_MAX, 0),
    ("M_TRIM_THRESHOLD", M_TRIM_THRESHOLD, 2**31 - 1),  # mallopt takes an int
    ("M_TOP_PAD", M_TOP_PAD, 64 * 2**20),
)

_lock = threading.Lock()
_result: dict | None = None

# jemalloc for run processes: never purge freed pages (no re-faulting every step), and serve
# large requests from the ordinary arenas (the default oversize arena purges them at once)
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1,oversize_threshold:0"
JEMALLOC_PATHS = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
                  "/usr/lib64/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2")


def jemalloc_library() -> str | None:
    """The jemalloc shared library on this machine (Linux), or None."""
    if platform.system() != "Linux":
        return None
    return next((path for path in JEMALLOC_PATHS if os.path.isfile(path)), None)


def run_allocator(env: dict | None = None) -> str:
    """The allocator run processes get: "jemalloc" (allocator_env preloads it) or "glibc"."""
    env = os.environ if env is None else env
    return "jemalloc" if "libjemalloc" in allocator_env(dict(env)).get("LD_PRELOAD", "") else "glibc"


def allocator_env(env: dict) -> dict:
    """`env` (changed in place and returned) for a run process: jemalloc preloaded with
    JEMALLOC_CONF where the machine has it, unless SIGSCOPE_MALLOC is "default" or "glibc"."""
    library = jemalloc_library()
    if env.get(ENV, "tuned") in ("default", "glibc") or library is None:
        return env
    preload = env.get("LD_PRELOAD", "")
    if "libjemalloc" not in preload:
        env["LD_PRELOAD"] = f"{library} {preload}".strip()
    env.setdefault("MALLOC_CONF", JEMALLOC_CONF)
    return env


def allocator() -> str:
    """The allocator this process runs on: "jemalloc" (preloaded) or "glibc"."""
    try:
        with open("/proc/self/maps") as maps:
            return "jemalloc" if "libjemalloc" in maps.read() else "glibc"
    except OSError:
        return "glibc"


# A CPU training step's resident memory over the tensors the profiler counts, by allocator:
# RSS growth = scale x tensor bytes + fixed (bench/profile_accuracy.py --rss, measured after the
# allocator's kept pages are handed back). On jemalloc, across the 12 zoo models at batch 32:
# 1.08 x + 3 MiB, within 10 % for 11 of them and 12.5 % for meg_basic_cnn. Each block is rounded
# up to its size class (up to 25 % above 16 KiB) and the arenas keep metadata and thread caches.
# On tuned glibc the heap fragments instead (0.52-0.80 of RSS was tensors), with no stable fit:
# 1.9 x bounds it.
RESIDENT = {"jemalloc": (1.08, 3 * 2**20), "glibc": (1.9, 0)}


def resident_bytes(tensor_bytes: float, allocator_name: str | None = None, processes: int = 1) -> int:
    """Expected peak RSS growth of a CPU training step whose tensors take `tensor_bytes` (all its
    processes), on `allocator_name` (None: what run processes get, run_allocator())."""
    scale, fixed = RESIDENT[allocator_name or run_allocator()]
    return int(tensor_bytes * scale + fixed * max(1, processes))


def release_free_memory() -> None:
    """Hand the pages the allocator keeps for reuse back to the kernel: jemalloc's dirty pages
    (a run process keeps them, decay off) through mallctl("arena.<all>.purge"), glibc's free heap
    through malloc_trim. For a measurement of RSS growth that must start from live memory only."""
    import ctypes

    libc = ctypes.CDLL(None)
    if allocator() == "jemalloc" and hasattr(libc, "mallctl"):
        libc.mallctl(b"arena.4096.purge", None, None, None, ctypes.c_size_t(0))  # 4096: MALLCTL_ARENAS_ALL
    elif hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def tune_malloc() -> dict:
    """Apply SETTINGS through glibc's mallopt, once per process.

    Returns {"applied": True, "settings": {name: value}} or {"applied": False, "reason": why}
    (not Linux/glibc, mallopt missing, SIGSCOPE_MALLOC=default, or glibc refused a value); in a
    process running on jemalloc (allocator_env) {"applied": True, "allocator": "jemalloc", ...}.
    Idempotent: every later call returns the first call's dict (a copy)."""
    global _result
    with _lock:
        if _result is None:
            _result = _apply()
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in _result.items()}


def _apply() -> dict:
    choice = os.environ.get(ENV, "tuned").strip().lower()
    if choice == "default":
        return {"applied": False, "reason": f"{ENV}=default: glibc's malloc left as it is"}
    if choice not in ("tuned", "glibc"):
        return {"applied": False, "reason": f"{ENV}={choice!r} is not 'tuned', 'glibc' or 'default'; malloc left "
                                            "as it is"}
    if allocator() == "jemalloc":  # a run process started by allocator_env: glibc's heap is not used
        return {"applied": True, "allocator": "jemalloc", "settings": {"MALLOC_CONF": os.environ.get("MALLOC_CONF", "")}}
    if platform.system() != "Linux":
        return {"applied": False, "reason": f"not Linux ({platform.system()}): no glibc mallopt"}
    libc_name, version = platform.libc_ver()
    if libc_name != "glibc":
        return {"applied": False, "reason": f"the C library is not glibc ({libc_name or 'unknown'})"}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as error:
        return {"applied": False, "reason": f"mallopt not found in the C library ({error})"}
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied: dict[str, int] = {}
    for name, param, value in SETTINGS:
        if mallopt(param, value) != 1:  # mallopt returns 1 on success
            return {"applied": bool(applied), "settings": applied,
                    "reason": f"glibc {version} refused mallopt({name}, {value})"}
        applied[name] = value
    return {"applied": True, "settings": applied, "glibc": version}
