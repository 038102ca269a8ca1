"""Windows whose label is probably wrong, ranked by cleanlab from out-of-sample probabilities.

    ids = submit_fold_runs(run_id, 4, jobs, store)      # 4 ordinary runs, "NAME · fold k/4", parent = run_id
    fold_status(store, ids)                             # FoldStatus: how far they are (for a page)
    found = label_issues(run_id, fold_runs=ids)         # when they have completed
    found = label_issues(run_id)                        # cheap: the run scores its own val + test windows
    for issue in found.issues[:20]:                     # worst first
        print(issue.rank, issue.id, issue.given, "->", issue.suggested, round(issue.quality, 3))

Two ways to get probabilities a model did not learn from:
- cross-validation: K ordinary runs of the run's own config with `data.folds=K, data.fold=k`
  (core.data.splits.fold_split): the training split's subjects/speakers are divided into K
  folds, and each run tests on one fold's training windows while the others train. Every
  training window is then scored by the one run that never saw its subject. The runs go through
  the JobManager like any run (Monitor and Runs show them) and carry the run's id in their
  `parent` column, so `find_fold_runs` finds them again.
- the run itself on its validation and test windows (no training; training windows are not
  scored, as the model has learned their labels).

Then `cleanlab.filter.find_label_issues(labels, pred_probs, return_indices_ranked_by=
"self_confidence")` picks the windows confident learning flags and ranks them worst first;
`quality` is cleanlab's label quality score (the probability the model gives the given label).

The given labels are the run's own (its `data.relabel` applied): a fold run's test windows keep
the source's labels (marks act on train and validation only), so labels are read from the
parent run's training split and joined with the fold runs' probabilities by window id.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from core.config import RunConfig
from core.errors import ConfigError, DataError
from core.explore.windows import group_key
from core.store import ACTIVE_STATUSES

FOLD_MARK = " · fold "          # a fold run's name: "NAME · fold k/K"
METHOD_FOLDS = "cross-validation ({k} folds over subjects)"
METHOD_SELF = "the run itself (val + test)"
POLL_SECONDS = 1.0
# Below this out-of-sample accuracy the ranking mostly lists the model's mistakes (measured: a
# 2-epoch ResNet1D at 0.35 on HAPT flagged 435 of 818 windows; at 0.63-0.79 it flagged 70-160).
WEAK_MODEL_ACCURACY = 0.6


@dataclass
class LabelIssue:
    """One window whose label cleanlab doubts; `index` is its row in LabelIssues.ids/probabilities."""

    id: str
    index: int
    split: str
    given: str
    suggested: str
    quality: float
    rank: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class LabelIssues:
    """The ranked issues (worst first) and what they were computed from (one row per scored window)."""

    issues: list[LabelIssue]
    method: str
    n_scored: int
    fold_runs: list[str]
    probabilities: np.ndarray            # (n_scored, K) out-of-sample
    ids: np.ndarray                      # (n_scored,) window ids
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # given label index
    splits: np.ndarray = field(default_factory=lambda: np.zeros(0, str))        # split of each scored window
    quality: np.ndarray = field(default_factory=lambda: np.zeros(0))            # cleanlab label quality
    class_names: list[str] = field(default_factory=list)
    run_id: str = ""

    @property
    def accuracy(self) -> float:
        """How often the out-of-sample answer agrees with the given label."""
        return float((self.probabilities.argmax(axis=1) == self.labels).mean()) if self.n_scored else float("nan")

    @property
    def warning(self) -> str:
        """A caution when the model is too weak for its doubts to mean much ('' otherwise)."""
        if self.n_scored and self.accuracy < WEAK_MODEL_ACCURACY:
            return (f"the model answers only {self.accuracy:.0%} of these windows as labelled: most flagged windows "
                    "are its own mistakes, not label errors; train the run longer or choose a stronger model")
        return ""

    def top(self, n: int) -> list[LabelIssue]:
        return self.issues[:n]

    def to_dict(self, top: int | None = None) -> dict:
        return {"run_id": self.run_id, "method": self.method, "n_scored": self.n_scored,
                "n_issues": len(self.issues), "fold_runs": list(self.fold_runs),
                "out_of_sample_accuracy": round(self.accuracy, 4), "warning": self.warning,
                "class_names": list(self.class_names),
                "issues": [i.to_dict() for i in (self.issues if top is None else self.issues[:top])]}


@dataclass
class FoldRun:
    run_id: str
    name: str
    fold: int        # 0 .. folds-1
    folds: int
    status: str
    epoch: int
    total_epochs: int | None
    error: str | None


@dataclass
class FoldStatus:
    """Where a set of fold runs stands (for the page and the CLI's progress line)."""

    runs: list[FoldRun]

    @property
    def completed(self) -> int:
        return sum(r.status == "completed" for r in self.runs)

    @property
    def ended(self) -> bool:
        return all(r.status not in ACTIVE_STATUSES for r in self.runs)

    @property
    def failed(self) -> list[FoldRun]:
        return [r for r in self.runs if r.status not in ACTIVE_STATUSES and r.status != "completed"]

    @property
    def progress(self) -> float:
        """0..1 over the runs' epochs (an ended run counts whole)."""
        if not self.runs:
            return 0.0
        done = [1.0 if r.status not in ACTIVE_STATUSES else (r.epoch / r.total_epochs if r.total_epochs else 0.0) for r in self.runs]
        return float(np.mean(done))

    def line(self) -> str:
        """'fold runs: 1 of 4 completed · fold 2/4 epoch 3/8 · 2 queued'."""
        parts = [f"fold runs: {self.completed} of {len(self.runs)} completed"]
        for r in self.runs:
            if r.status == "running":
                parts.append(f"fold {r.fold + 1}/{r.folds} epoch {r.epoch}/{r.total_epochs or '?'}")
        queued = sum(r.status == "queued" for r in self.runs)
        if queued:
            parts.append(f"{queued} queued")
        if self.failed:
            parts.append(", ".join(f"fold {r.fold + 1} {r.status}" for r in self.failed))
        return " · ".join(parts)


# ---- the fold runs ---------------------------------------------------------------------------
def training_groups(run_config: RunConfig) -> list[str]:
    """The subjects/speakers of a run's training split (its data loaded, features from the cache)."""
    from core.data import load

    bundle = load(_without_folds(run_config).data)
    return sorted(set(np.asarray(bundle.train.groups).astype(str).tolist()), key=group_key)


def fold_configs(run_config: RunConfig, folds: int, groups: list[str] | None = None,
                 run_id: str | None = None, run_name: str | None = None) -> list[RunConfig]:
    """K validated copies of `run_config`, copy k with `data.folds=K, data.fold=k` and named
    'NAME · fold k+1/K'. groups: the training split's groups when the caller has them (else the
    data is loaded); run_id/run_name only for the messages and names."""
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ConfigError(f"folds={folds!r}: cross-validation needs a whole number of at least 2 folds "
                          "(4 or 5 is usual)")
    folds = int(folds)
    if run_config.data.folds is not None:
        raise ConfigError(f"run {run_id or run_config.name!r} is itself fold {run_config.data.fold + 1} of a "
                          f"{run_config.data.folds}-fold cross-validation; find label issues on the run it was "
                          "made for")
    base = _without_folds(run_config)
    groups = groups if groups is not None else training_groups(base)
    if folds > len(groups):
        who = f"run {run_id}" if run_id else "the run"
        shown = ", ".join(groups[:20]) + (", ..." if len(groups) > 20 else "")
        advice = (f"use --folds {len(groups)} or fewer" if len(groups) >= 2 else
                  "cross-validation over subjects needs at least 2; use the cheap option (no --folds)")
        raise DataError(f"K={folds} folds need {folds} subjects in the training split; {who} trains on "
                        f"{len(groups)} ({shown}): {advice}")
    name = run_name or base.name or _default_name(base)
    configs = []
    for k in range(folds):
        member = RunConfig.from_dict(base.to_dict())
        member.data.folds, member.data.fold = folds, k
        member.name = f"{name}{FOLD_MARK}{k + 1}/{folds}"
        configs.append(member.validated())
    return configs


def submit_fold_runs(run_id: str, folds: int, manager, store=None, priority: int = 0) -> list[str]:
    """Queue the K fold runs of a stored run in a JobManager (each an ordinary run, named
    'RUN NAME · fold k/K', its `parent` column = run_id); returns their ids, fold 0 first.
    DataError before anything is queued when K is not between 2 and the training subjects."""
    store = store or manager.store
    run = _get_run(store, run_id)
    configs = fold_configs(RunConfig.from_dict(run["config"]), folds, run_id=run_id,
                           run_name=run.get("name") or None)
    return [manager.submit(c, name=c.name, priority=priority, columns={"parent": run_id}) for c in configs]


def find_fold_runs(store, run_id: str, folds: int | None = None) -> list[FoldRun]:
    """The fold runs made for `run_id`, one per fold, by fold: for each fold the newest completed
    run (else the newest run); folds=None takes the K of the newest fold run."""
    made = [r for r in store.list_runs() if r.get("parent") == run_id
            and ((r.get("config") or {}).get("data") or {}).get("folds")]
    if not made:
        return []
    k = folds if folds is not None else int(made[0]["config"]["data"]["folds"])  # newest first
    chosen: dict[int, dict] = {}
    for r in made:  # newest first: keep the newest completed, else the newest
        data = r["config"]["data"]
        if int(data["folds"]) != k:
            continue
        fold = int(data.get("fold") or 0)
        current = chosen.get(fold)
        if current is None or (current["status"] != "completed" and r["status"] == "completed"):
            chosen[fold] = r
    return [_fold_run(chosen[f]) for f in sorted(chosen)]


def fold_status(store, fold_run_ids: list[str]) -> FoldStatus:
    """How far the fold runs are (their status and epoch, from the store)."""
    runs = []
    for run_id in fold_run_ids:
        run = store.get_run(run_id)
        if run is None:
            raise ConfigError(f"no run {run_id!r} in {store.path}; it was deleted: start the fold runs again")
        runs.append(_fold_run(run))
    return FoldStatus(runs)


# ---- ranking -----------------------------------------------------------------------------------
def label_issues(run_id: str, folds: int | None = None, store=None, fold_runs: list[str] | None = None) -> LabelIssues:
    """Rank the windows of run `run_id` whose labels look wrong.

    fold_runs (ids) or folds=K (its completed fold runs, found in the store): every training
    window scored by the fold run that held its subject out. Neither: the cheap option, the run
    scores its own validation and test windows."""
    from core.store import Store

    store = store or Store()
    run = _get_run(store, run_id)
    config = RunConfig.from_dict(run["config"])
    if fold_runs is None and folds is not None:
        found = find_fold_runs(store, run_id, folds)
        done = [r for r in found if r.status == "completed"]
        if len(done) < folds:
            raise ConfigError(f"run {run_id} has {len(done)} of {folds} fold runs completed; train them first "
                              f"(`python -m core explore label-issues --run {run_id} --folds {folds}`, or Explore's "
                              "cross-validation button)")
        fold_runs = [r.run_id for r in done]
    if fold_runs:
        ids, labels, probs, splits, class_names = _cross_validated(store, run_id, config, list(fold_runs))
        method = METHOD_FOLDS.format(k=len(fold_runs))
    else:
        ids, labels, probs, splits, class_names = _self_scored(store, run_id)
        method = METHOD_SELF
    return rank_label_issues(ids, labels, probs, splits, class_names, method, list(fold_runs or []), run_id)


def rank_label_issues(ids: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, splits: np.ndarray,
                      class_names: list[str], method: str, fold_runs: list[str] | None = None,
                      run_id: str = "") -> LabelIssues:
    """cleanlab on given labels and out-of-sample probabilities: the flagged windows, worst first."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, k = probabilities.shape if probabilities.ndim == 2 else (0, 0)
    if probabilities.ndim != 2 or len(labels) != n or len(ids) != n or k != len(class_names):
        raise ConfigError(f"probabilities {probabilities.shape} do not fit {len(labels)} labels of "
                          f"{len(class_names)} classes")
    if n < 2:
        raise ConfigError(f"{n} window(s) scored: label issues need at least 2")
    if not np.isfinite(probabilities).all():
        raise ConfigError(f"{int((~np.isfinite(probabilities).all(axis=1)).sum())} of {n} windows have NaN or "
                          "infinite probabilities; the model cannot rank them")
    # cleanlab wants rows that sum to 1; softmax output does up to float rounding
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    quality = get_label_quality_scores(labels, probabilities, method="self_confidence")
    flagged = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
    names = list(class_names)
    suggested = probabilities.argmax(axis=1)
    issues = [LabelIssue(id=str(ids[i]), index=int(i), split=str(splits[i]), given=names[labels[i]],
                         suggested=names[suggested[i]], quality=float(quality[i]), rank=r + 1)
              for r, i in enumerate(np.asarray(flagged, dtype=np.int64))]
    return LabelIssues(issues=issues, method=method, n_scored=n, fold_runs=list(fold_runs or []),
                       probabilities=probabilities.astype(np.float32), ids=np.asarray(ids).astype(str),
                       labels=labels, splits=np.asarray(splits).astype(str), quality=np.asarray(quality),
                       class_names=names, run_id=run_id)


def _cross_validated(store, run_id: str, config: RunConfig, fold_runs: list[str]):
    """Every training window of the run with the probabilities of the fold run that tested on it."""
    from core.data import load
    from core.infer import load_run, split_probabilities

    if config.data.folds is not None:
        raise ConfigError(f"run {run_id} is itself a fold run; find label issues on the run it was made for")
    bundle = load(config.data)
    train_ids = np.asarray(bundle.train.ids).astype(str)
    wanted = _data_key(config)
    found: dict[str, np.ndarray] = {}
    by: dict[str, str] = {}
    for fold_id in fold_runs:
        run = _get_run(store, fold_id)
        if run["status"] != "completed":
            raise ConfigError(f"fold run {fold_id} is {run['status']}; wait for it, or train it again "
                              f"({(run.get('error') or '').strip()[:200]})")
        fold_config = RunConfig.from_dict(run["config"])
        if fold_config.data.folds is None or _data_key(fold_config) != wanted:
            raise ConfigError(f"run {fold_id} is not a cross-validation fold of run {run_id}'s data "
                              "(its data config differs beyond data.folds/data.fold)")
        predictor = load_run(fold_id, store)
        if list(predictor.class_names) != list(bundle.class_names):
            raise ConfigError(f"fold run {fold_id} knows classes {predictor.class_names}, run {run_id} "
                              f"{bundle.class_names}; train the fold runs again")
        answer = split_probabilities(predictor, "test")
        bad = ~np.isfinite(answer.probabilities).all(axis=1)
        if bad.any():
            raise ConfigError(f"fold run {fold_id} gives NaN or infinite probabilities for {int(bad.sum())} of "
                              f"{len(bad)} windows (e.g. {answer.ids[bad][0]}); its weights or inputs are broken: "
                              "train that fold again")
        for window_id, p in zip(answer.ids.astype(str), answer.probabilities):
            if window_id in found:
                raise ConfigError(f"window {window_id} is in the test split of fold runs {by[window_id]} and "
                                  f"{fold_id}; give one run per fold")
            found[window_id], by[window_id] = p, fold_id
    missing = [i for i in train_ids if i not in found]
    if missing:
        raise ConfigError(f"{len(missing)} of run {run_id}'s {len(train_ids)} training windows are in no fold "
                          f"run's test split (e.g. {missing[0]}); give all {len(fold_runs)} folds' runs")
    probs = np.stack([found[i] for i in train_ids]) if len(train_ids) else np.zeros((0, len(bundle.class_names)))
    return (train_ids, np.asarray(bundle.train.y), probs, np.full(len(train_ids), "train"),
            list(bundle.class_names))


def _self_scored(store, run_id: str):
    """The run's own answers on its validation and test windows."""
    from core.data import load
    from core.infer import load_run, split_probabilities

    predictor = load_run(run_id, store)
    bundle = load(predictor.config.data)
    parts = []
    for split in ("val", "test"):
        if len(getattr(bundle, split)):
            answer = split_probabilities(predictor, split, bundle)
            bad = ~np.isfinite(answer.probabilities).all(axis=1)
            if bad.any():
                raise ConfigError(f"run {run_id} gives NaN or infinite probabilities for {int(bad.sum())} of its "
                                  f"{len(bad)} {split} windows (e.g. {answer.ids[bad][0]}); its weights are broken")
            parts.append((answer, split))
    if not parts:
        raise ConfigError(f"run {run_id} has no validation or test windows to score; use cross-validation "
                          "(--folds K) to score its training windows")
    return (np.concatenate([a.ids.astype(str) for a, _ in parts]), np.concatenate([a.labels for a, _ in parts]),
            np.concatenate([a.probabilities for a, _ in parts]),
            np.concatenate([np.full(len(a.ids), s) for a, s in parts]), list(predictor.class_names))


# ---- CLI ---------------------------------------------------------------------------------------
def cli_label_issues(args) -> int:
    """`python -m core explore label-issues --run ID [--folds K] [--json] [--top N]`: with --folds,
    train the K fold runs (or reuse completed ones) and wait for them, Ctrl-C cancelling them;
    then print the ranked issues."""
    from core.commands import emit
    from core.commands.predict import resolve_run
    from core.store import Store

    store = Store()
    run_id, folds = resolve_run(store, args.run), getattr(args, "folds", None)
    top = getattr(args, "top", None) or 20
    fold_ids = None
    if folds is not None:
        fold_ids = _fold_runs_for_cli(store, run_id, int(folds), quiet=bool(getattr(args, "json", False)))
        if fold_ids is None:
            return 1
    found = label_issues(run_id, store=store, fold_runs=fold_ids)
    emit(found.to_dict(top), getattr(args, "json", False), _text(found, top))
    return 0


def _fold_runs_for_cli(store, run_id: str, folds: int, quiet: bool) -> list[str] | None:
    """The completed fold runs of `run_id` (reused when all K are there, else trained now)."""
    existing = find_fold_runs(store, run_id, folds)
    if len(existing) == folds and all(r.status == "completed" for r in existing):
        _say(f"using the {folds} completed fold runs of {run_id}: {', '.join(r.run_id for r in existing)}")
        return [r.run_id for r in existing]
    run = _get_run(store, run_id)
    configs = fold_configs(RunConfig.from_dict(run["config"]), folds, run_id=run_id, run_name=run.get("name") or None)
    from core.jobs import JobManager

    manager = JobManager(store, mode="process")
    ids: list[str] = []
    try:
        ids = [manager.submit(c, name=c.name, columns={"parent": run_id}) for c in configs]
        _say(f"training {folds} fold runs of {run_id} ({configs[0].model.name}, {configs[0].train.epochs} epochs "
             f"each): {', '.join(ids)}; runs folder {store.runs_dir}")
        status = _wait(store, ids, quiet)
    except KeyboardInterrupt:
        for run in ids:
            manager.cancel(run)
        manager.shutdown(wait=True, cancel=True, timeout=30)
        raise
    finally:
        manager.shutdown(wait=False)
    if status.failed:
        for r in status.failed:
            _say(f"fold run {r.run_id} ({r.name}) {r.status}: {r.error or ''}".rstrip(": "))
        _say(f"{len(status.failed)} of {folds} fold runs did not complete; no label issues")
        return None
    return ids


def _wait(store, ids: list[str], quiet: bool) -> FoldStatus:
    """Until every fold run has ended (as the store records it), printing a progress line when it changes."""
    last = ""
    while True:
        status = fold_status(store, ids)
        line = status.line()
        if line != last and not quiet:
            _say(line)
        last = line
        if status.ended:
            return status
        time.sleep(POLL_SECONDS)


def _text(found: LabelIssues, top: int) -> str:
    head = (f"run {found.run_id}: {len(found.issues)} likely label issues among {found.n_scored} windows scored by "
            f"{found.method} (out-of-sample accuracy {found.accuracy:.3f})")
    if found.warning:
        head += f"\nwarning: {found.warning}"
    if not found.issues:
        return head
    rows = [f"{'rank':>4}  {'window':<18} {'split':<5}  {'given':<20} {'suggested':<20} quality"]
    rows += [f"{i.rank:>4}  {i.id:<18} {i.split:<5}  {i.given:<20} {i.suggested:<20} {i.quality:.3f}"
             for i in found.issues[:top]]
    more = f"\n  ... {len(found.issues) - top} more (--top N)" if len(found.issues) > top else ""
    return head + "\n" + "\n".join(rows) + more


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- small helpers -------------------------------------------------------------------------------
def _get_run(store, run_id: str) -> dict:
    run = store.get_run(run_id)
    if run is None:
        raise ConfigError(f"no run {run_id!r} in {store.path}; see `python -m core runs list`")
    return run


def _fold_run(run: dict) -> FoldRun:
    data = (run.get("config") or {}).get("data") or {}
    return FoldRun(run_id=run["id"], name=run.get("name") or "", fold=int(data.get("fold") or 0),
                   folds=int(data.get("folds") or 0), status=run["status"], epoch=int(run.get("epoch") or 0),
                   total_epochs=run.get("total_epochs"), error=run.get("error"))


def _without_folds(config: RunConfig) -> RunConfig:
    copy = RunConfig.from_dict(config.to_dict())
    copy.data.folds, copy.data.fold = None, 0
    return copy


def _data_key(config: RunConfig) -> dict:
    """A run's data config less the fold choice, in canonical form (validation fills a source's
    default options): fold runs of one run share it."""
    config = _without_folds(config)
    try:
        config = config.validated(environment=False)
    except ConfigError:  # a config stored before a rule changed: compare it as written
        pass
    return config.data.to_dict()


def _default_name(config: RunConfig) -> str:
    from core.compare import data_words
    return f"{config.model.name} on {data_words(config.data.to_dict())}"


__all__ = ["FOLD_MARK", "FoldRun", "FoldStatus", "LabelIssue", "LabelIssues", "cli_label_issues",
           "find_fold_runs", "fold_configs", "fold_status", "label_issues", "rank_label_issues",
           "submit_fold_runs", "training_groups"]
