"""Freed heap pages go back to the kernel while the server runs (`server/heap.py`): glibc keeps them otherwise."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from apuppet.server.app import Server
from apuppet.server.heap import HeapTrimmer

from .conftest import make_config

# In a fresh process: RSS is what is measured, and this one's heap is the test run's.
FRAGMENTED = """
import json
from apuppet.server.heap import HeapTrimmer
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
heap = HeapTrimmer()
base = rss()
# 64 MB of relay-sized payloads (above Python's small-object allocator: glibc's malloc), one in 16 kept alive,
# spread over the whole heap, as a GOP's last packets stay while the rest has gone.
payloads = [bytes(1100) for _ in range(60000)]
kept = payloads[::16]
del payloads
before = rss()
released = heap.trim()
print(json.dumps({"base": base, "before": before, "after": rss(), "released": released, "kept": len(kept)}))
"""


def test_a_trim_gives_back_the_pages_freed_between_live_payloads() -> None:
    assert HeapTrimmer().available  # glibc: Debian's
    out = subprocess.run([sys.executable, "-c", FRAGMENTED], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    # Without the trim the freed payloads' pages stay: RSS still holds most of the 64 MB.
    assert seen["before"] - seen["base"] > 40, seen
    assert seen["released"], seen
    assert seen["before"] - seen["after"] > 30, seen


async def test_the_server_trims_its_heap_in_its_housekeeping_until_it_stops() -> None:
    server = Server(make_config(), housekeeping_interval=0.02)
    server.heap.interval = 0.1
    async with server:
        await asyncio.sleep(0.6)
        done = server.heap.trims
        assert done >= 3, done
    await asyncio.sleep(0.3)
    assert server.heap.trims == done  # nothing runs after stop()
