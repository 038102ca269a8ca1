"""CLI sub-commands: one module each, with add_parser(subparsers) that sets `func`."""
import json


def emit(obj, as_json: bool, text: str | None = None) -> None:
    """Print `obj` as JSON when --json was given, else the human text (or JSON)."""
    if as_json or text is None:
        print(json.dumps(obj, indent=2, default=str))
    else:
        print(text)
