"""`python -m core presets`: the run presets (core.presets): the shipped ones in presets/*.json
and the ones you saved (Train page, "Save these settings as a preset"), to train with
`python -m core train --preset NAME [--set key=value ...]`.

    python -m core presets            # name, title, model on data
    python -m core presets --json     # every preset with its overrides and full run config
"""
from __future__ import annotations

import argparse

from core.commands import emit


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("presets", help="list the named run presets (train one with `train --preset NAME`)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print every preset with its full run config as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.presets import list_presets, problems

    presets = list_presets()
    width = max(len(p.name) for p in presets)
    lines = []
    for p in presets:
        cfg = p.config
        lines.append(f"{p.name:<{width}}  {p.title}{' [saved]' if p.saved else ''}  ({cfg.model.name} on "
                     f"{cfg.data.source}, split {cfg.data.split}, {cfg.train.epochs} epochs)")
    for name, why in problems().items():
        lines.append(f"{name:<{width}}  left out, no longer valid: {why}")
    lines.append("train one: python -m core train --preset NAME [--set key=value ...]; "
                 "the full data: --set data.options.full=true")
    emit([p.to_dict() for p in presets], args.json, "\n".join(lines))
    return 0
