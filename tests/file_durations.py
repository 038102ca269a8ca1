"""Rewrite tests/file_durations.json from the output of a full run with per-test durations:

    .venv/bin/python -m pytest --durations=0 > /tmp/suite.log; python tests/file_durations.py /tmp/suite.log

The table only orders the run (tests/conftest.py starts the longest files first); a file not in
it starts after those that are, and nothing fails when the table is stale.
"""
from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path

TABLE = Path(__file__).with_name("file_durations.json")
ABOUT = ("seconds per test file in a full run (pytest --durations=0, 2 workers, 2-core machine); tests/conftest.py "
         "starts the longest files first so that the two workers end together. Rewrite with: "
         "python tests/file_durations.py LOG")


def file_seconds(log_text: str) -> dict[str, int]:
    """Seconds per test file: the sum of its tests' setup, call and teardown lines."""
    total: collections.Counter = collections.Counter()
    for m in re.finditer(r"^([0-9.]+)s (?:call|setup|teardown)\s+(\S+)", log_text, re.M):
        total[m.group(2).split("::")[0]] += float(m.group(1))
    return {f: round(s) for f, s in total.most_common() if round(s) >= 1}


def load() -> dict[str, int]:
    try:
        return json.loads(TABLE.read_text())["seconds"]
    except (OSError, ValueError, KeyError):
        return {}


if __name__ == "__main__":
    seconds = file_seconds(Path(sys.argv[1]).read_text())
    TABLE.write_text(json.dumps({"_about": ABOUT, "seconds": seconds}, indent=1) + "\n")
    print(f"{len(seconds)} files, {sum(seconds.values())} s in all -> {TABLE}")
