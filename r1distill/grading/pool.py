"""`MathPool`: math grading in worker processes with a hard outside deadline per item.

Items go to long-lived worker processes, a few at a time; a worker whose current item overruns `timeout_s` is
SIGKILLed, the item is recorded as `timeout`, a fresh worker replaces the dead one, and the rest of the batch goes
on (the items it had not started yet go back to the queue). Each item's deadline starts when the worker starts it.

Kept over pebble's `ProcessPool(timeout=)` because its IPC is cheaper: `bench_verify.py --pebble` (2 cores) grades
equal pairs, where the pool's own cost is all there is, at ~34k verdicts/s against pebble's ~7k (items go 8 to a
message, not one future each), and math-verify-bound wrong pairs no slower (225 vs 181/s, within the machine's
noise); its workers also start warm (forkserver preload), so an import is never read as a timeout.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import resource
import signal
import time
import zlib
from collections import deque
from collections.abc import Sequence
from functools import lru_cache
from multiprocessing.connection import Connection, wait
from typing import Any

from r1distill.grading.math import CORRECT, ERROR, TIMEOUT, WRONG, grade_final, math_equal

log = logging.getLogger(__name__)

_STARTUP_S = 120
_CHUNK = 8  # items per message: one pipe round trip per item costs more than an easy verdict


@lru_cache(maxsize=16384)
def _grade_one(kind: str, args: tuple[Any, ...], shortcuts: bool) -> tuple[str, str | None]:
    """(reason, extracted) of one job; cached, because the n samples of a problem share few distinct answers."""
    if kind == "pair":
        pred, gold = args
        return (CORRECT if math_equal(pred, gold, shortcuts) else WRONG), pred
    found, text, gold = args
    return grade_final(found, text, gold, shortcuts)


def _worker(conn: Connection, memory_mb: int | None, shortcuts: bool) -> None:
    """Worker loop: receive a list of (index, kind, args), send back (index, reason, detail, extracted) for each
    as it is done. Exits on None or a closed pipe."""
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
        for index, kind, args in msg:
            try:
                (reason, extracted), detail = _grade_one(kind, args, shortcuts), None
            except MemoryError:
                reason, extracted, detail = ERROR, None, "MemoryError"
            except Exception as e:  # a grader bug must cost one item, not the batch
                reason, extracted, detail = ERROR, None, f"{type(e).__name__}: {e}"[:300]
            conn.send((index, reason, detail, extracted))


class _Slot:
    def __init__(self, ctx: Any, memory_mb: int | None, shortcuts: bool):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker, args=(child, memory_mb, shortcuts), daemon=True)
        self.proc.start()
        child.close()
        self.jobs: deque[int] = deque()  # item indices sent, in the order the worker does them
        self.deadline = 0.0  # of the item the worker is on: jobs[0]
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
        """(reason, detail) for each (extracted answer, gold): `correct`, `wrong_answer`, `timeout`, `grader_error`."""
        return [(reason, detail) for reason, detail, _ in self._run([("pair", tuple(p)) for p in pairs])]

    def grade_final(self, jobs: Sequence[tuple[tuple[str, ...], str, str]]) -> list[tuple[str, str | None, str | None]]:
        """(reason, detail, extracted) for each (boxes, final-answer text, gold); see `math.grade_final`."""
        return self._run([("final", (tuple(found), text, gold)) for found, text, gold in jobs])

    def _run(self, items: list[tuple[str, tuple[Any, ...]]]) -> list[tuple[str, str | None, str | None]]:
        """Grade each distinct item once, under the deadline; results in the order of `items`."""
        if not items:
            return []
        distinct = list(dict.fromkeys(items))
        results = self._grade_distinct(distinct)
        by_item = dict(zip(distinct, results, strict=True))
        return [by_item[item] for item in items]

    def _grade_distinct(self, items: list[tuple[str, tuple[Any, ...]]]) -> list[tuple[str, str | None, str | None]]:
        while len(self._slots) < min(self.workers, len(items)):
            self._slots.append(_Slot(self._ctx, self.memory_mb, self.shortcuts))
        results: list[tuple[str, str | None, str | None] | None] = [None] * len(items)
        # Items of one reference go to one worker (its parse and verdicts are cached there), and an idle worker
        # takes from the others' queues, so the load stays even.
        queues: list[deque[int]] = [deque() for _ in self._slots]
        for i, (_, args) in enumerate(items):
            queues[zlib.crc32(args[-1].encode("utf-8", "replace")) % len(queues)].append(i)
        while any(queues) or any(s.jobs for s in self._slots):
            for k, slot in enumerate(list(self._slots)):
                if slot.jobs or not any(queues):
                    continue
                todo = queues[k] or max(queues, key=len)
                # small chunks when little is left, so every worker stays busy to the end
                left = sum(len(q) for q in queues)
                size = max(1, min(_CHUNK, left // (2 * len(self._slots))))
                chunk = [todo.popleft() for _ in range(min(size, len(todo)))]
                try:
                    slot.conn.send([(i, *items[i]) for i in chunk])
                except OSError:  # the worker died between items: replace it and retry
                    todo.extendleft(reversed(chunk))
                    self._replace(slot)
                    continue
                slot.jobs.extend(chunk)
                slot.deadline = time.monotonic() + self.timeout_s
            busy = [s for s in self._slots if s.jobs]
            if not busy:
                continue
            next_deadline = min(s.deadline for s in busy)
            ready = wait([s.conn for s in busy], timeout=max(0.0, next_deadline - time.monotonic()))
            for slot in busy:
                # poll(), not `in ready`: a result may have come in while a timed-out worker was being replaced
                while slot.jobs and (slot.conn in ready or slot.conn.poll()):
                    ready = [c for c in ready if c is not slot.conn]
                    try:
                        index, reason, detail, extracted = slot.conn.recv()
                    except (EOFError, OSError):  # crashed (segfault, OOM kill): charge the item, not the batch
                        results[slot.jobs.popleft()] = (ERROR, f"worker died (exit {slot.proc.exitcode})", None)
                        queues[0].extendleft(reversed(slot.jobs))
                        slot.jobs.clear()
                        slot = self._replace(slot)
                        break
                    results[index] = (reason, detail, extracted)
                    slot.jobs.popleft()
                    slot.deadline = time.monotonic() + self.timeout_s
                if slot.jobs and time.monotonic() >= slot.deadline:
                    results[slot.jobs.popleft()] = (TIMEOUT, f"over {self.timeout_s:g}s", None)
                    queues[0].extendleft(reversed(slot.jobs))
                    slot.jobs.clear()
                    self._replace(slot)
        return [r if r is not None else (ERROR, "lost", None) for r in results]
