"""The TextRoom plugin with Chromium on the other end: the browser's own ICE, DTLS and SCTP, not aiortc's.

The page plays janus.js' part (its data channel labelled `JanusDataChannel`, created before the answer) and
gets the Janus signalling through Playwright, straight from the in-process Gateway; the WebRTC path is real.
Skipped only when Debian's Chromium is missing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from apuppet.api.gateway import Gateway
from apuppet.config import Config
from apuppet.media.datachannel import SERVER_LABEL
from apuppet.media.peers import Peers
from apuppet.plugins.textroom import TextRoomPlugin
from apuppet.server.app import media_settings
from tests.inproc import InProcClient, plugin_data

from .test_textroom import PLUGIN, DataPeer, agent_online

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

from playwright.async_api import Page, async_playwright  # noqa: E402

ANSWER = """async (offer) => {
  const pc = window.pc = new RTCPeerConnection({ iceServers: [] });
  window.inbox = [];
  window.serverLabels = [];
  const listen = (ch, tag) => { ch.onmessage = (m) => window.inbox.push([tag, JSON.parse(m.data)]); };
  pc.ondatachannel = (e) => { window.serverLabels.push(e.channel.label); listen(e.channel, e.channel.label); };
  const own = window.own = pc.createDataChannel('JanusDataChannel');
  listen(own, 'own');
  window.ownOpen = new Promise((resolve) => { own.onopen = resolve; });
  await pc.setRemoteDescription(offer);
  await pc.setLocalDescription(await pc.createAnswer());
  if (pc.iceGatheringState !== 'complete') {
    await new Promise((resolve) => {
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
      setTimeout(resolve, 3000);
    });
  }
  return { type: 'answer', sdp: pc.localDescription.sdp };
}"""

SEND = """async (body) => {
  await window.ownOpen;
  window.own.send(JSON.stringify(body));
}"""

WAIT = """async (wanted) => {
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    const i = window.inbox.findIndex(([, m]) => m.textroom === wanted);
    if (i >= 0) return window.inbox.splice(i, 1)[0];
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('no ' + wanted + '; inbox ' + JSON.stringify(window.inbox));
}"""


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


async def test_chromium_admin_drives_the_agent(page: Page) -> None:
    config = Config(rtp_port_range="20000-40000")
    plugin = TextRoomPlugin(config, Peers(media_settings(config)))
    gateway = Gateway([plugin])
    agent = DataPeer(InProcClient(gateway), agent=True)
    try:
        await agent.connect()
        await agent.open_channel()
        room, password = await agent_online(agent)

        janus = InProcClient(gateway, remote="127.0.0.2")
        session = janus.create()
        handle = janus.attach(session, PLUGIN)
        janus.message(session, handle, {"request": "setup"})
        offer = await janus.event(session, lambda e: "jsep" in e)
        answer = await page.evaluate(ANSWER, offer["jsep"])
        assert janus.message(session, handle, {"request": "ack"}, answer)["janus"] == "ack"
        await janus.event(session, lambda e: plugin_data(e).get("result") == "ok")
        await janus.event(session, lambda e: e["janus"] == "webrtcup", timeout=20)

        username = f"admin:{room}"
        await page.evaluate(
            SEND, {"textroom": "join", "room": room, "pin": password, "username": username, "transaction": "j"}
        )
        # Janus' order on the server's channel: the join echo, then the reply.
        assert await page.evaluate(WAIT, "join") == [
            SERVER_LABEL,
            {"textroom": "join", "room": room, "username": username},
        ]
        label, joined = await page.evaluate(WAIT, "success")
        assert label == SERVER_LABEL and joined["transaction"] == "j"
        assert joined["participants"] == [{"username": "device:Pixel 7", "display": "Pixel 7"}]
        await agent.recv(lambda m: m["textroom"] == "join")

        await page.evaluate(SEND, {"textroom": "message", "room": room, "text": "tap,5,6,50", "transaction": "m"})
        label, acked = await page.evaluate(WAIT, "success")
        assert (label, acked) == (SERVER_LABEL, {"textroom": "success", "transaction": "m"})
        _, got = await agent.recv(lambda m: m.get("text") == "tap,5,6,50")
        assert got["from"] == username
        label, own_copy = await page.evaluate(WAIT, "message")
        assert own_copy["text"] == "tap,5,6,50"
        agent.send({"textroom": "message", "room": room, "text": "pong,1", "ack": False, "transaction": "p"})
        label, pong = await page.evaluate(WAIT, "message")
        assert label == SERVER_LABEL and (pong["from"], pong["text"]) == ("device:Pixel 7", "pong,1")
        assert await page.evaluate("window.serverLabels") == [SERVER_LABEL]

        # Closing the tab's PeerConnection is a leave for the agent.
        await page.evaluate("window.pc.close()")
        _, left = await agent.recv(lambda m: m["textroom"] == "leave", timeout=30)
        assert left["username"] == f"admin:{room}"
    finally:
        await agent.close()
        await gateway.close()
    assert plugin.links == {} and plugin.rooms.rooms == {}
