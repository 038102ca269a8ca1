"""Seed ensembles: one run config trained N times with seeds s, s+1, ..., answering together
(InceptionTime's paper trains five and averages their probabilities).

    plan = seed_configs(cfg, 5)              # SeedPlan: 5 configs, names "NAME · seed k/5", one tag
    run_ids = submit_seeds(jobs, cfg, 5)     # queued in a JobManager, each run tagged
    for e in list_ensembles(store):          # stored groups with at least two completed runs
        score = ensemble_score(store, e)     # its test accuracy (evaluate_split), computed once, cached
        e.label(score)                       # 'ensemble of 5 · inception_time on uea GunPoint · test acc 0.987 · NAME'

The members differ only in `train.seed` (and their names); the data split (`data.split_seed`)
is the same, so they are tested on the same examples and `core.infer.load_ensemble` takes
them. The tag lives in the runs table's `ensemble` column (store schema 5): a run belongs to
at most one ensemble, and the tag survives a rename. An ensemble's test score is cached in
`<runs>/ensembles/<tag>.json`, keyed by its members (a member deleted or completed later
scores it again).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from core.compare import data_words, dataset_key
from core.config import RunConfig
from core.errors import ConfigError

MAX_MEMBERS = 20
TAG_PREFIX = "ens-"
SCORES_DIR = "ensembles"  # inside the runs folder: one JSON of test scores per ensemble tag
SEED_MARK = " · seed "  # a member's name: "NAME · seed k/N"


@dataclass
class SeedPlan:
    """The configs of one seed ensemble and the tag they share ('' for a lone run)."""

    tag: str
    configs: list[RunConfig]

    @property
    def seeds(self) -> list[int]:
        return [c.train.seed for c in self.configs]


@dataclass
class EnsembleScore:
    """An ensemble's score on its members' own split (see core.infer.evaluate_split)."""

    run_ids: list[str]
    split: str
    n: int
    accuracy: float
    macro_f1: float
    member_accuracy: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class StoredEnsemble:
    """The runs stored under one ensemble tag, by seed; `members` are the completed ones."""

    tag: str
    runs: list[dict]

    @property
    def members(self) -> list[dict]:
        return [r for r in self.runs if r["status"] == "completed"]

    @property
    def run_ids(self) -> list[str]:
        return [r["id"] for r in self.members]

    @property
    def planned(self) -> int:
        return len(self.runs)

    @property
    def name(self) -> str:
        """The name the runs share (without ' · seed k/N')."""
        return self.runs[0]["name"].split(SEED_MARK)[0] if self.runs else ""

    @property
    def created_at(self) -> float:
        return min(r["created_at"] for r in self.runs)

    def what(self) -> str:
        """'inception_time on uea GunPoint': the model and data the members share."""
        return f"{self.runs[0]['config'].get('model', {}).get('name', '?')} on {dataset_key(self.runs[0])}"

    def label(self, score: EnsembleScore | None = None) -> str:
        """One line for pickers: members, model, data and (when scored) the ensemble's test accuracy."""
        n = len(self.members)
        size = f"ensemble of {n}" + (f" (of {self.planned} started)" if n != self.planned else "")
        acc = f" · {score.split} acc {score.accuracy:.3f}" if score is not None else ""
        return f"{size} · {self.what()}{acc} · {self.name}"


def new_tag() -> str:
    from core.store import new_run_id
    return TAG_PREFIX + new_run_id()


def seed_configs(config: RunConfig, n: int, tag: str | None = None) -> SeedPlan:
    """`n` validated copies of `config` that differ only in `train.seed` (seed, seed+1, ...) and in
    their names ('NAME · seed k/n', NAME = the config's name or 'MODEL on SOURCE'), sharing a new
    tag; n = 1 gives the config alone with no tag. ConfigError for an n out of range."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_MEMBERS:
        raise ConfigError(f"an ensemble of {n!r} seeds: choose a whole number from 1 to {MAX_MEMBERS} "
                          "(InceptionTime's paper uses 5)")
    config = config.validated()
    if n == 1:
        return SeedPlan("", [config])
    first, high = config.train.seed, 2**32 - 1
    if first + n - 1 > high:
        raise ConfigError(f"train.seed={first} leaves no room for {n} seeds below {high + 1}; choose a smaller seed")
    base = config.name or f"{config.model.name} on {data_words(config.data.to_dict())}"
    configs = []
    for k in range(n):
        member = RunConfig.from_dict(config.to_dict())
        member.train.seed = first + k
        member.name = f"{base}{SEED_MARK}{k + 1}/{n}"
        configs.append(member.validated())
    return SeedPlan(tag or new_tag(), configs)


def submit_seeds(jobs, config: RunConfig, n: int, priority: int = 0) -> list[str]:
    """Queue the `n` seeds of `config` in a JobManager (one run each, tagged); returns their ids."""
    plan = seed_configs(config, n)
    columns = {"ensemble": plan.tag} if plan.tag else None
    return [jobs.submit(c, priority=priority, columns=columns) for c in plan.configs]


def create_seed_runs(store, plan: SeedPlan) -> list[str]:
    """Store the plan's runs as queued (the CLI trains them in its own process, one after another)."""
    ids = []
    for c in plan.configs:
        run_id = store.create_run(c.to_dict(), name=c.name)
        if plan.tag:
            store.update_run(run_id, ensemble=plan.tag)
        ids.append(run_id)
    return ids


def list_ensembles(store, min_members: int = 2) -> list[StoredEnsemble]:
    """Stored ensembles with at least `min_members` completed runs, newest first."""
    groups: dict[str, list[dict]] = {}
    for run in store.list_runs():
        if run.get("ensemble"):
            groups.setdefault(run["ensemble"], []).append(run)
    found = [StoredEnsemble(tag, sorted(runs, key=lambda r: (r["config"].get("train", {}).get("seed", 0),
                                                             r["created_at"])))
             for tag, runs in groups.items()]
    return sorted((e for e in found if len(e.members) >= min_members), key=lambda e: -e.created_at)


def get_ensemble(store, ref: str) -> StoredEnsemble:
    """An ensemble by tag (or by the name its runs share: the newest such); ConfigError naming
    the ensembles there are when none matches or it has fewer than two completed runs."""
    every = list_ensembles(store, min_members=0)
    match = [e for e in every if e.tag == ref] or [e for e in every if e.name == ref]
    if not match:
        known = ", ".join(f"{e.tag} ({e.name})" for e in every[:8]) or "none yet (python -m core train --ensemble N)"
        raise ConfigError(f"no ensemble {ref!r} in this store; ensembles: {known}")
    ensemble = match[0]
    if len(ensemble.members) < 2:
        raise ConfigError(f"ensemble {ensemble.tag} has {len(ensemble.members)} completed run(s) of "
                          f"{ensemble.planned}; it needs two to answer together (wait for, or resume, the others)")
    return ensemble


def _scores_path(store, tag: str) -> Path:
    if not tag.startswith(TAG_PREFIX) or "/" in tag or "\\" in tag or ".." in tag:
        raise ConfigError(f"{tag!r} is not an ensemble tag")
    return Path(store.runs_dir) / SCORES_DIR / f"{tag}.json"


def cached_score(store, ensemble: StoredEnsemble, split: str = "test") -> EnsembleScore | None:
    """The ensemble's score when it was computed for these members, else None (nothing computed)."""
    try:
        data = json.loads(_scores_path(store, ensemble.tag).read_text())
        score = EnsembleScore(**data[split])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return score if score.run_ids == ensemble.run_ids else None


def ensemble_score(store, ensemble: StoredEnsemble, split: str = "test", model=None) -> EnsembleScore:
    """The ensemble's accuracy on its members' `split` (core.infer.evaluate_split over
    load_ensemble), computed once per set of members and cached under the runs folder;
    `model`: the loaded Ensemble, when the caller has it."""
    cached = cached_score(store, ensemble, split)
    if cached is not None:
        return cached
    from core.infer import evaluate_split, load_ensemble

    model = model if model is not None else load_ensemble(ensemble.run_ids, store)
    s = evaluate_split(model, split)
    score = EnsembleScore(run_ids=list(s["run_ids"]), split=split, n=int(s["n"]), accuracy=float(s["accuracy"]),
                          macro_f1=float(s["macro_f1"]),
                          member_accuracy={k: float(v) for k, v in (s.get("member_accuracy") or {}).items()})
    path = _scores_path(store, ensemble.tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[split] = score.to_dict()
    from core.train.checkpoints import atomic_write_text
    atomic_write_text(path, json.dumps(data, indent=1))
    return score
