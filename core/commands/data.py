"""`python -m core data list|inspect`: the data sources and what one config resolves to.

    python -m core data list --json
    python -m core data inspect hapt --set options.classes=all12 --set split=subject --json
    python -m core data inspect imu_csv --path my.csv --set window=100 --json
"""
from __future__ import annotations

from core.commands import emit
from core.config import DataConfig, parse_sets


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help="list data sources, inspect a dataset")
    sub = parser.add_subparsers(dest="data_command", required=True)
    lister = sub.add_parser("list", help="the data sources, their options and the augmentations")
    lister.add_argument("--json", action="store_true", help="print JSON")
    lister.set_defaults(func=run_list)
    inspect = sub.add_parser("inspect", help="load a source and report classes, channels, windows, splits")
    inspect.add_argument("source", help="source name (see `data list`)")
    inspect.add_argument("--path", default=None, help="file or folder to read")
    inspect.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="a DataConfig field, e.g. window=256, split=subject, options.classes=all12")
    inspect.add_argument("--cache-dir", default=None, help="feature cache folder (default ./runs/cache)")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(func=run_inspect)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def data_config(source: str, path: str | None, sets: list[str]) -> DataConfig:
    """A checked DataConfig from the CLI's source, --path and --set pairs (keys of the data
    section, with or without "data."), validated by the one spec like a run's."""
    from core import spec
    from core.config import RunConfig

    overrides = {"data.source": source, **({"data.path": path} if path else {})}
    for key, value in parse_sets(sets).items():
        overrides[key if key.startswith("data.") else f"data.{key}"] = value
    return spec.validate(spec.apply_overrides(RunConfig(), overrides), section="data").data


def run_list(args) -> int:
    from core.data import list_augmentations, list_sources
    sources = list_sources()
    text = "\n".join(f"{s['name']:16s} {s['signal']:6s} {s['description']}" for s in sources)
    emit({"sources": sources, "augmentations": list_augmentations()}, args.json, text)
    return 0


def inspect_report(cfg: DataConfig, cache_dir: str | None = None) -> dict:
    """What `data inspect` prints: classes with counts, channels, rate, windows, splits, skips."""
    from core.data import load
    bundle = load(cfg, cache_dir=cache_dir)
    info = bundle.info
    report = {
        "source": cfg.source, "config": cfg.to_dict(),
        "classes": [{"name": n, "count": info["class_counts"].get(n, 0)} for n in bundle.class_names],
        "channels": bundle.channel_names, "sample_rate": bundle.sample_rate,
        "input_kind": bundle.input_kind, "input_shape": list(bundle.input_shape),
        "examples": info["n_examples"], "window_count": info.get("window_count", info["n_examples"]),
        "split_sizes": info["split_sizes"], "normalization": bundle.normalization.get("kind"),
        "skipped_lines": info.get("skipped_count", 0), "skipped": info.get("skipped", []),
        "cache": info["cache"], "info": info,
    }
    return report


def run_inspect(args) -> int:
    cfg = data_config(args.source, args.path, args.set)
    report = inspect_report(cfg, args.cache_dir)
    classes = ", ".join(f"{c['name']}={c['count']}" for c in report["classes"])
    text = (f"{report['source']}: {report['examples']} examples of {report['input_kind']} {tuple(report['input_shape'])} "
            f"at {report['sample_rate']:g} Hz\n  classes: {classes}\n  channels: {', '.join(report['channels'])}\n"
            f"  splits: {report['split_sizes']}\n  skipped: {report['skipped_lines']}  cache: {report['cache']}")
    tts = report["info"].get("tts")
    if tts:
        text += (f"\n  synthetic: {tts['files']} clips from {tts['voices']} {tts['engine']} voices, "
                 f"in the training split only")
    emit(report, args.json, text)
    return 0
