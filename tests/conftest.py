from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from . import served


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for pytest-xdist's `--dist loadgroup` (./test.sh runs the suite on several workers): a module's
    tests stay on one worker, so that its module-scoped servers and browser pages start once; and the modules
    that put 198.18.0.1 on a veth pair (tests/netns.py) share one worker, since two such pairs at once would
    both route 198.18.0.0/30. Without xdist the markers do nothing."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        module = getattr(item, "module", None)
        if module is None:
            continue
        uses_netns = any(getattr(module, name, None) is not None for name in ("UdpBlockedNamespace", "Coturn"))
        item.add_marker(pytest.mark.xdist_group("netns" if uses_netns else module.__name__))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def servers() -> AsyncIterator[list[served.Served]]:
    """`apuppet serve` processes a test starts (`tests/served.py`), stopped after it."""
    made: list[served.Served] = []
    yield made
    await served.stop(made)
