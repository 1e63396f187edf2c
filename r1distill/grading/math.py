"""Math grading: math-verify against the reference, in worker processes with a hard outside deadline per item.

math-verify's own timeout relies on `signal.alarm` and has been reported to hang anyway, so it is switched off
(`parsing_timeout=None`, `timeout_seconds=None`) and every item is bounded from outside instead: `MathPool` hands
items one at a time to long-lived worker processes and SIGKILLs a worker whose item overruns `timeout_s`. That item
is recorded as `timeout`, a fresh worker replaces the dead one, and the rest of the batch goes on.

`math_equal` is the comparison itself (no deadline): call it only inside a pool worker or where a hang is acceptable.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import re
import resource
import signal
import time
from collections import deque
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from multiprocessing.connection import Connection, wait
from typing import Any

log = logging.getLogger(__name__)

CORRECT, WRONG, TIMEOUT, ERROR = "correct", "wrong_answer", "timeout", "grader_error"
_STARTUP_S = 120
_SPACES = re.compile(r"\s+|\\[,;:! ]|\\left|\\right|\\?\$")
_WRAPPER = re.compile(r"\\(?:textbf|mathbf|boldsymbol)\{([^{}]*)\}")
_PLAIN_UNITS = re.compile(r"^(-?\d[\d,]*(?:\.\d+)?)\s+((?:[A-Za-z]{2,}\.?\s*){1,3})$")
_MATH_WORDS = {"pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "inf", "infty", "mod"}
_RATIONAL = re.compile(r"^(-?)(?:\\[dt]?frac\{(\d+)\}\{(\d+)\}|(\d+(?:\.\d+)?)(?:/(\d+))?)$")


def _unwrap(text: str) -> str:
    """Drop presentation-only wrappers (`\\textbf{..}`, `\\displaystyle`) and plain-word units after a number
    ("18 dollars", "3 square feet": math-verify strips units only inside `\\text{}`) before any comparison."""
    text = _WRAPPER.sub(r"\1", text).replace("\\displaystyle", "").strip()
    m = _PLAIN_UNITS.match(text)
    if m and not set(m.group(2).lower().replace(".", " ").split()) & _MATH_WORDS:
        return m.group(1)
    return text


def _normalise(text: str) -> str:
    """A conservative textual form: strings equal after this are the same answer, whatever math-verify says."""
    text = _SPACES.sub("", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return text.rstrip(".")


class _NoTimeoutWarning(logging.Filter):
    """math-verify warns that its timeout is off; here that is deliberate (the pool bounds each item from outside)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_NoTimeoutWarning())


@lru_cache(maxsize=4096)
def _parse(text: str) -> list[Any]:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    # Wrapping in \boxed makes math-verify read the whole string as one LaTeX answer (units, \text, %, ...);
    # ExprExtractionConfig catches plain-text answers such as "1/2" or "3.5".
    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    return parse("\\boxed{" + text + "}", config, parsing_timeout=None)


def _rational(text: str) -> Fraction | None:
    """The exact value of a plain number (`-12`, `3.50`, `7/2`, `\\frac{7}{2}`, `1,000`), else None."""
    if len(text) > 100:  # beyond any real answer; also keeps int() clear of Python's digit limit
        return None
    m = _RATIONAL.match(text.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", text) else text)
    if not m:
        return None
    sign, num, den, plain, over = m.groups()
    try:
        value = Fraction(int(num), int(den)) if num else Fraction(plain) / (int(over) if over else 1)
    except ZeroDivisionError:
        return None
    return -value if sign else value


def math_equal(pred: str, gold: str, shortcuts: bool = True) -> bool:
    """True when the extracted answer `pred` is mathematically equal to the gold answer `gold` (both strings).

    Plain numbers on both sides are compared exactly without math-verify (most GSM8K/AIME/MATH answers: fast and
    certain); everything else goes through math-verify's parse + verify. `shortcuts=False` always asks math-verify.
    """
    pred, gold = _unwrap(pred), _unwrap(gold)
    if not pred or not gold:
        return False
    if shortcuts:
        p_norm, g_norm = _normalise(pred), _normalise(gold)
        if p_norm == g_norm:
            return True
        p_num, g_num = _rational(p_norm), _rational(g_norm)
        if p_num is not None and g_num is not None:
            return p_num == g_num
    from math_verify import verify

    g, p = _parse(gold), _parse(pred)
    if not g or not p:
        return False
    return bool(verify(g, p, timeout_seconds=None))


def _worker(conn: Connection, memory_mb: int | None, shortcuts: bool) -> None:
    """Worker loop: receive (index, pred, gold), send back (index, reason, detail). Exits on None or a closed pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    if memory_mb:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    math_equal("\\frac{1}{2}", "x", shortcuts=False)  # warm up the LaTeX parser before the first deadline starts
    conn.send("ready")
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        index, pred, gold = msg
        try:
            reason, detail = (CORRECT if math_equal(pred, gold, shortcuts) else WRONG), None
        except MemoryError:
            reason, detail = ERROR, "MemoryError"
        except Exception as e:  # a grader bug must cost one item, not the batch
            reason, detail = ERROR, f"{type(e).__name__}: {e}"[:300]
        conn.send((index, reason, detail))


class _Slot:
    def __init__(self, ctx: Any, memory_mb: int | None, shortcuts: bool):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker, args=(child, memory_mb, shortcuts), daemon=True)
        self.proc.start()
        child.close()
        self.job: tuple[int, float] | None = None  # (item index, deadline)
        # Item deadlines start only once the worker is up: a cold start (imports) must not read as a timeout.
        try:
            ready = self.conn.poll(_STARTUP_S) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise RuntimeError(f"a math-verify worker did not start within {_STARTUP_S}s (exit {self.proc.exitcode})")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join()
        self.conn.close()


class MathPool:
    """A pool of math-verify workers with a hard per-item deadline. Use as a context manager.

    `start_method` "forkserver" (default) is safe in threaded parents (trainers); "fork" starts faster.
    `shortcuts=False` sends every pair through math-verify (see `math_equal`; for benchmarks and tests).
    """

    def __init__(
        self,
        workers: int = 2,
        timeout_s: float = 5.0,
        memory_mb: int | None = 4096,
        start_method: str = "forkserver",
        shortcuts: bool = True,
    ):
        if workers < 1 or timeout_s <= 0:
            raise ValueError(f"MathPool: workers must be >= 1 and timeout_s > 0 (got {workers}, {timeout_s})")
        self.workers, self.timeout_s, self.memory_mb, self.shortcuts = workers, timeout_s, memory_mb, shortcuts
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload([__name__, "math_verify"])
        self._slots: list[_Slot] = []
        self.restarts = 0

    def __enter__(self) -> MathPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for slot in self._slots:
            try:
                slot.conn.send(None)
            except OSError:
                pass
        for slot in self._slots:
            slot.proc.join(timeout=1)
            slot.kill()
        self._slots = []

    def _replace(self, slot: _Slot) -> _Slot:
        slot.kill()
        self.restarts += 1
        fresh = _Slot(self._ctx, self.memory_mb, self.shortcuts)
        self._slots[self._slots.index(slot)] = fresh
        return fresh

    def grade(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str | None]]:
        """(reason, detail) for each (pred, gold): `correct`, `wrong_answer`, `timeout` or `grader_error`."""
        if not pairs:
            return []
        while len(self._slots) < min(self.workers, max(len(pairs), 1)):
            self._slots.append(_Slot(self._ctx, self.memory_mb, self.shortcuts))
        results: list[tuple[str, str | None] | None] = [None] * len(pairs)
        todo = deque(range(len(pairs)))
        while todo or any(s.job for s in self._slots):
            for slot in list(self._slots):
                if slot.job is None and todo:
                    index = todo.popleft()
                    try:
                        slot.conn.send((index, *pairs[index]))
                    except OSError:  # the worker died between items: replace it and retry
                        todo.appendleft(index)
                        self._replace(slot)
                        continue
                    slot.job = (index, time.monotonic() + self.timeout_s)
            busy = [s for s in self._slots if s.job]
            if not busy:
                continue
            next_deadline = min(s.job[1] for s in busy)
            ready = wait([s.conn for s in busy], timeout=max(0.0, next_deadline - time.monotonic()))
            for slot in busy:
                # poll(), not `in ready`: a result may have come in while a timed-out worker was being replaced
                if slot.conn in ready or slot.conn.poll():
                    try:
                        index, reason, detail = slot.conn.recv()
                        results[index] = (reason, detail)
                        slot.job = None
                    except (EOFError, OSError):  # crashed (segfault, OOM kill): charge the item, not the batch
                        results[slot.job[0]] = (ERROR, f"worker died (exit {slot.proc.exitcode})")
                        self._replace(slot)
                elif time.monotonic() >= slot.job[1]:
                    results[slot.job[0]] = (TIMEOUT, f"over {self.timeout_s:g}s")
                    self._replace(slot)
        return [r if r is not None else (ERROR, "lost") for r in results]
