"""Memory of the near-duplicate index per indexed sample (random signatures: no matches, the worst case for size).

.venv/bin/python tests/perf/bench_lsh_memory.py [N]      default 200000
"""

import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from r1distill.filter.dedup import Deduplicator, lsh_params  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
print("bands, rows:", lsh_params(0.8, 128))
rng = np.random.default_rng(0)
sigs = [rng.integers(0, 2**63, 128, dtype=np.uint64).tobytes() for _ in range(N)]  # what the filter's survivors hold
tracemalloc.start()
d = Deduplicator(True, 0.8, 128)
t = time.perf_counter()
for i, s in enumerate(sigs):
    d.check(f"id/{i}/0", f"{i:024x}", np.frombuffer(s, dtype=np.uint64))
cur, _ = tracemalloc.get_traced_memory()
rate = N / (time.perf_counter() - t)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(
    f"{N} items: {cur / N:.0f} B/item for the index, ids and exact keys (besides the 1024-B signatures), "
    f"{rate:,.0f} items/s under tracemalloc; peak RSS {rss:.0f} MB"
)
