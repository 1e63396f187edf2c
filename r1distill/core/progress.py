"""Progress on stderr for long work: items done/total, output tokens/s and ETA."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    """A tqdm bar (items, ETA) with an output-token rate; quieter when stderr is a log file, not a terminal."""

    def __init__(self, total: int, desc: str, initial: int = 0):
        tty = sys.stderr.isatty()
        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="sample",
            file=sys.stderr,
            mininterval=0.5 if tty else 10.0,
            dynamic_ncols=True,
        )
        self.start = time.monotonic()
        self.tokens = 0
        self.items = 0

    def update(self, items: int = 1, tokens: int = 0) -> None:
        self.items += items
        self.tokens += tokens
        self.bar.set_postfix_str(f"{self.tokens_per_s:.0f} tok/s", refresh=False)
        self.bar.update(items)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.elapsed, 1e-9)

    def close(self) -> None:
        self.bar.close()
