"""Cold start: what a short CLI process (`profile`, `predict`) skips so that it answers fast.

    from core.coldstart import dynamo_deferred
    with dynamo_deferred():      # FlopCounterMode, meta-device models, ... without torch._dynamo
        report = profile_model("resnet1d", measure_latency=False, cross_check=False)

Why: torch wraps a few hundred of its own functions in `torch._disable_dynamo` (the dispatch of
FlopCounterMode, the Python references behind meta-device ops such as `torch.randn` on "meta",
optimizer steps, checkpointing). The wrapper imports `torch._dynamo` on its first call, so that
`torch.compile` will not trace into the function: measured on the 2-core dev machine, 1.2 s of
CPU time (sympy included) — as much again as `import torch`, for a profile card or a
checkpoint check that never compiles anything.

A process in which `torch._dynamo` was never imported is compiling nothing, and outside
compilation `torch._dynamo.disable(fn)` just calls `fn`. So while `dynamo_deferred()` is active
and `torch._dynamo` is not loaded, each such wrapper is handed its own function as the
"disabled" one (the attribute the wrapper caches it under), and nothing is imported; on exit
those attributes are removed again, so a later call in the same process (say a run with
`torch.compile`) imports `torch._dynamo` and wraps as torch intends. Once `torch._dynamo` is
loaded, `dynamo_deferred()` does nothing. The wrappers are found once per process by their
code object (about 60 ms for the ~290 of torch 2.13); a wrapper created later just behaves as
torch made it.

Other heavy imports are deferred the ordinary way: inside the function that needs them (fvcore
in core.profiling.flops, librosa in the audio features, pandas in the CSV reader).
"""
from __future__ import annotations

import gc
import sys
import threading
import types
from contextlib import contextmanager
from typing import Iterator

_CACHE_ATTR = "__dynamo_disable"  # where torch._compile._disable_dynamo's wrapper caches the disabled function
_lock = threading.Lock()
_wrapped: list | None = None  # the functions behind torch's _disable_dynamo wrappers, found once
_depth = 0  # nested or concurrent dynamo_deferred() blocks: the attributes go when the last one ends
_set: list = []


def _wrapped_functions() -> list:
    """The `fn` of every `torch._disable_dynamo(fn)` wrapper alive now (found by its code object)."""
    import torch._compile

    probe = torch._compile._disable_dynamo(lambda: None)
    code = getattr(probe, "__code__", None)
    if code is None or "fn" not in code.co_freevars:
        return []  # another torch: nothing is deferred, torch behaves as it does
    slot = code.co_freevars.index("fn")
    found = []
    for obj in gc.get_objects():
        if type(obj) is types.FunctionType and obj.__code__ is code and obj is not probe:
            try:
                fn = obj.__closure__[slot].cell_contents
            except (AttributeError, IndexError, TypeError, ValueError):
                continue
            found.append(fn)
    return found


@contextmanager
def dynamo_deferred() -> Iterator[None]:
    """Run the block without importing torch._dynamo where torch would import it only to keep
    torch.compile out of its own functions (see the module doc). Nests, and blocks in several
    threads share one set-up; a no-op once torch._dynamo is loaded. The attributes are
    process-wide while a block runs, so it is meant for processes that compile nothing meanwhile
    (the CLI's `profile` and `predict` use it; the dashboard, where a training thread may compile,
    does not)."""
    global _wrapped, _depth
    with _lock:
        if "torch._dynamo" in sys.modules and _depth == 0:
            active = False
        else:
            active = True
            if _depth == 0:
                if _wrapped is None:
                    _wrapped = _wrapped_functions()
                for fn in _wrapped:
                    if getattr(fn, _CACHE_ATTR, None) is None:
                        try:
                            setattr(fn, _CACHE_ATTR, fn)
                        except (AttributeError, TypeError):
                            continue
                        _set.append(fn)
            _depth += 1
    try:
        yield
    finally:
        if active:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    for fn in _set:
                        if getattr(fn, _CACHE_ATTR, None) is fn:
                            delattr(fn, _CACHE_ATTR)
                    _set.clear()
