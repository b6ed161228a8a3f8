"""What the lazily loaded WebRTC stack costs the first device of a fresh server (`apuppet/media/peers.py`). Not a
test: it prints.

For each of `--servers` fresh `apuppet serve` processes on loopback: the time from `create` to the textroom offer
(create, attach, `setup`, the event with the server's offer), as the Android agent does it, for the first device
and for the next one; while the first one's stack loads, an `info` request every 5 ms, whose slowest answer says
how long the event loop was held. The same again with the stack imported at start-up (`--undo lazy-stack` of
bench/memory.py), which is what the server did before. Medians over the servers.

    python bench/coldstart.py [--servers 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.memory import UNDO  # noqa: E402
from bench.storm import TEXTROOM, Api, Tally, start_apuppet  # noqa: E402


async def setup_ms(api: Api) -> float:
    started = time.perf_counter()
    session, handle = await api.session(TEXTROOM)
    await api.call(f"/{session}/{handle}", {"janus": "message", "body": {"request": "setup"}})
    event = await api.poll_event(session, lambda e: "jsep" in e, timeout=30)
    if event is None:
        raise RuntimeError("no offer")
    took = (time.perf_counter() - started) * 1000
    await api.call(f"/{session}", {"janus": "destroy"})
    return took


async def one_server(preamble: str) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="coldstart-") as folder:
        target = start_apuppet(Path(folder), preamble=preamble)
        api = Api(target, "127.0.0.5", Tally())
        probe = Api(target, "127.0.0.6", Tally())
        slowest = 0.0
        try:
            await asyncio.sleep(1)
            first = asyncio.create_task(setup_ms(api))
            while not first.done():
                started = time.perf_counter()
                await probe.call("", {"janus": "info"})
                slowest = max(slowest, (time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.005)
            return first.result(), await setup_ms(api), slowest
        finally:
            await api.close()
            await probe.close()
            target.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=5)
    args = parser.parse_args()
    for name, preamble in (
        ("stack loaded with the first peer", ""),
        ("stack imported at start-up", UNDO["lazy-stack"]),
    ):
        runs = [await one_server(preamble) for _ in range(args.servers)]
        first, second, slowest = (statistics.median(r[i] for r in runs) for i in range(3))
        print(
            f"{name}: first device's setup {first:.0f} ms, the next one's {second:.0f} ms, "
            f"slowest info meanwhile {slowest:.0f} ms (medians of {args.servers} servers)"
        )


if __name__ == "__main__":
    asyncio.run(main())
