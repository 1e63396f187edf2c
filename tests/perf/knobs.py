"""The command line every benchmark shares: its knobs as `--name value` flags with their defaults, so a run says
what it measured (`knobs(__doc__, prompts=64, max_tokens=128)` -> `--prompts`, `--max-tokens`)."""

from __future__ import annotations

import argparse
from typing import Any


def knobs(doc: str, internal: tuple[str, ...] = (), **defaults: Any) -> argparse.Namespace:
    """Parse `--name` flags, one per keyword (its type from the default; a False default is a switch; None takes a
    string); `internal` names flags (str, not shown in --help) a benchmark passes to its own subprocesses."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, default in defaults.items():
        flag = "--" + name.replace("_", "-")
        if default is False:
            p.add_argument(flag, action="store_true")
        else:
            p.add_argument(flag, type=type(default) if default is not None else str, default=default)
    for name in internal:
        p.add_argument("--" + name, help=argparse.SUPPRESS)
    return p.parse_args()
