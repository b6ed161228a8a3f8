"""Issue 17 #4: a viewer with the pin must not pose as the device (real textroom joins over aiortc data channels).

Agents obey every participant but themselves, and `apuppet sessions` names the device after the `device:` user;
a viewer that joined as `device:stealth` hid from the list and relabelled the next viewer's device."""

from __future__ import annotations

from apuppet.api.gateway import Gateway
from apuppet.plugins.textroom import TextRoomPlugin
from tests.plugins import test_textroom
from tests.plugins.test_textroom import DataPeer, agent_online, connected

# The TextRoom tests' fixtures: a Gateway with the plugin, and the peers closed after each test.
clock, server, peers = test_textroom.clock, test_textroom.server, test_textroom.peers


async def test_only_the_rooms_creator_may_join_as_the_device(
    server: tuple[Gateway, TextRoomPlugin], peers: list[DataPeer]
) -> None:
    gateway, plugin = server
    agent = await connected(gateway, peers, agent=True)
    room, password = await agent_online(agent)
    viewer = await connected(gateway, peers, agent=False, remote="127.0.0.5")
    for name in ("device:stealth", "DEVICE:Pixel 8", "Device:"):
        reply = await viewer.request({"textroom": "join", "room": room, "pin": password, "username": name})
        assert reply["textroom"] == "error" and reply["error_code"] == 419 and "creator" in reply["error"], reply
    assert list(plugin.rooms.rooms[room].participants) == ["device:Pixel 7"]
    # Without the pin it learns nothing more than a wrong pin.
    reply = await viewer.request({"textroom": "join", "room": room, "pin": "0000", "username": "device:x"})
    assert reply["error"] == "Unauthorized (wrong pin)"
    # The same viewer joins under a name of its own, and the agent hears only that one.
    reply = await viewer.request({"textroom": "join", "room": room, "pin": password, "username": f"admin:{room}"})
    assert reply["textroom"] == "success"
    _, joined = await agent.recv(lambda m: m.get("textroom") == "join")
    assert joined["username"] == f"admin:{room}"
    assert [m for _, m in agent.inbox if m.get("textroom") == "join"] == []
