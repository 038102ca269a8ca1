"""`python -m core models [--json]`: the zoo, each model's input kind, typed
hyperparameters and whether it exposes attention.

    python -m core models
    python -m core models --json
"""
from __future__ import annotations

from core.commands import emit


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the model zoo and each model's hyperparameters")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def models_listing() -> list[dict]:
    """One entry per zoo model: name, input_kind, hyperparameters, has_attention, ..."""
    from core.models.registry import list_models, spec
    return [spec(name).to_dict() for name in list_models()]


def _text(models: list[dict]) -> str:
    lines = []
    for m in models:
        attention = "  attention" if m["has_attention"] else ""
        shape = "x".join(str(s) for s in m["default_input"])
        lines.append(f"{m['name']:24s} {m['input_kind']:12s} default input {shape}{attention}")
        if m.get("description"):
            lines.append(f"    {m['description'].splitlines()[0]}")
        for h in m["hyperparameters"]:
            if h["type"] == "choice":
                allowed = "{" + ", ".join(str(c) for c in h["choices"]) + "}"
            elif h["type"] == "bool":
                allowed = "true/false"
            else:
                allowed = f"[{h['low']}, {h['high']}]"
            lines.append(f"    {h['name']:16s} {h['type']:6s} default {h['default']!s:8s} {allowed:20s} {h['help']}")
    return "\n".join(lines)


def run(args) -> int:
    models = models_listing()
    emit(models, args.json, _text(models))
    return 0
