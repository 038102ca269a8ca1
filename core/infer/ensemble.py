"""Several runs that answer together; one run is an ensemble of one.

    ensemble = load_ensemble(["RUN_A", "RUN_B", "RUN_C"])   # the mean of their window probabilities
    as_ensemble(predictor)                                   # a Predictor as an Ensemble of one

Members share classes (same order), signal, sample rate, window and stride (their features,
models and seeds may differ: each keeps its own pipeline). The first member is `primary`:
its pipeline reads the file and its model explains the answer.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError
from core.infer.loading import Predictor, load_run


@dataclass
class Ensemble:
    """Runs that answer together (see the module doc). One member is a single run."""

    members: list[Predictor]

    def __post_init__(self) -> None:
        if not self.members:
            raise ConfigError("an ensemble needs at least one run")
        first = self.members[0]
        for m in self.members[1:]:
            checks = (("classes", m.class_names, first.class_names), ("signal", m.signal, first.signal),
                      ("sample rate (Hz)", m.sample_rate, first.sample_rate),
                      ("window (samples)", m.window, first.window), ("stride (samples)", m.stride, first.stride))
            if m.signal == "imu":
                checks += (("channels", m.channel_names, first.channel_names),)
            for what, theirs, ours in checks:
                if theirs != ours:
                    raise ConfigError(f"run {m.run_id} cannot join an ensemble with run {first.run_id}: its {what} "
                                      f"{theirs} differ from {ours}; ensemble runs trained on the same task")

    @property
    def primary(self) -> Predictor:
        return self.members[0]

    @property
    def single(self) -> bool:
        return len(self.members) == 1

    @property
    def run_id(self) -> str:
        return "+".join(str(m.run_id) for m in self.members)

    @property
    def run_ids(self) -> list[str]:
        return [str(m.run_id) for m in self.members]

    # the file-reading side is the same for every member: the primary's
    signal = property(lambda self: self.primary.signal)
    sample_rate = property(lambda self: self.primary.sample_rate)
    window = property(lambda self: self.primary.window)
    stride = property(lambda self: self.primary.stride)
    window_seconds = property(lambda self: self.primary.window_seconds)
    class_names = property(lambda self: self.primary.class_names)
    channel_names = property(lambda self: self.primary.channel_names)
    adapted = property(lambda self: self.primary.adapted)

    def describe(self) -> str:
        if self.single:
            return self.primary.describe()
        models = ", ".join(f"{m.config.model.name} ({m.features})" for m in self.members)
        return f"ensemble of {len(self.members)} runs: {models}; {self.primary.describe().split(': ', 1)[1]}"


def as_ensemble(model: Predictor | Ensemble) -> Ensemble:
    """An Ensemble as it is, a Predictor as an Ensemble of one."""
    return model if isinstance(model, Ensemble) else Ensemble([model])


def like(original: Predictor | Ensemble, ensemble: Ensemble) -> Predictor | Ensemble:
    """`ensemble` in the form `original` was given in (a lone Predictor back as a Predictor)."""
    return ensemble if isinstance(original, Ensemble) else ensemble.primary


def load_ensemble(run_ids: list[str], store=None, which: str = "best", device: str = "cpu") -> Ensemble:
    """An Ensemble of stored runs (each loaded as by load_run); ConfigError when they do not fit together."""
    from core.store import Store

    store = store or Store()
    if len(run_ids) < 2:
        raise ConfigError("an ensemble needs at least two runs; classify with the one run instead")
    if len(set(run_ids)) != len(run_ids):
        raise ConfigError(f"runs {run_ids} name one run twice; an ensemble needs different runs")
    return Ensemble([load_run(r, store, which, device) for r in run_ids])
