"""The page's Janus client (js/janus.js) against the real server: WebSocket, HTTP long poll, the fallback
between them, errors, and no session left behind."""

from __future__ import annotations

from playwright.sync_api import Page, WebSocketRoute

from .conftest import DemoProcess, wait

# Runs in the page: a session, a textroom handle, the setup offer delivered as an event, then destroy.
FLOW = """async ([base, secret, prefer]) => {
  const m = await import('./js/janus.js');
  const s = await m.connect(base, { apisecret: secret, prefer });
  const h = await s.attach('janus.plugin.textroom');
  const offer = h.waitFor((data, jsep) => jsep && jsep.type === 'offer');
  const sync = await h.message({ request: 'setup' });
  const { data, jsep } = await offer;
  const out = { kind: s.kind, id: s.id, sync, result: data.result, sdp: jsep.sdp.includes('webrtc-datachannel') };
  await h.detach();
  await s.destroy();
  return out;
}"""


def open_page(page: Page, server: DemoProcess) -> None:
    page.goto(server.url())


def test_websocket_first(page: Page, server: DemoProcess) -> None:
    open_page(page, server)
    out = page.evaluate(FLOW, [server.base, server.secret, ""])
    assert out["kind"] == "websocket"
    assert out["sync"] is None  # setup is asynchronous: an ack, then the event with the offer
    assert out["result"] == "ok" and out["sdp"]


def test_http_long_poll(page: Page, server: DemoProcess) -> None:
    open_page(page, server)
    out = page.evaluate(FLOW, [server.base, server.secret, "http"])
    assert out["kind"] == "http"
    assert out["result"] == "ok" and out["sdp"]


def test_falls_back_to_long_poll_when_websockets_are_blocked(page: Page, server: DemoProcess) -> None:
    refused: list[str] = []

    def block(ws: WebSocketRoute) -> None:
        refused.append(ws.url)
        ws.close()

    page.route_web_socket("**/janus", block)
    open_page(page, server)
    out = page.evaluate(FLOW, [server.base, server.secret, ""])
    assert refused, "the page never tried the WebSocket"
    assert out["kind"] == "http"
    assert out["result"] == "ok"


def test_wrong_api_secret_is_a_janus_error(page: Page, server: DemoProcess) -> None:
    open_page(page, server)
    got = page.evaluate(
        """async (base) => { const m = await import('./js/janus.js');
           try { await m.connect(base, { apisecret: 'wrong' }); return null; }
           catch (e) { return [e.name, e.code]; } }""",
        server.base,
    )
    assert got == ["JanusError", 403]


def test_unreachable_server(page: Page) -> None:
    gone = DemoProcess(with_agent=False)
    page.goto(gone.url())
    gone.stop()
    got = page.evaluate(
        """async (base) => { const m = await import('./js/janus.js');
           try { await m.connect(base, {}); return null; } catch (e) { return e.name; } }""",
        gone.base,
    )
    assert got == "UnreachableError"


def test_sessions_end_with_the_page(page: Page, server: DemoProcess) -> None:
    before = server.metric("apuppet_sessions")
    open_page(page, server)
    for prefer in ("websocket", "http"):
        page.evaluate(
            """async ([base, secret, prefer]) => { const m = await import('./js/janus.js');
               window.s = await m.connect(base, { apisecret: secret, prefer });
               await window.s.attach('janus.plugin.textroom'); }""",
            [server.base, server.secret, prefer],
        )
        wait(lambda: server.metric("apuppet_sessions") == before + 1)
        # pagehide: a closing socket (WebSocket) or a sendBeacon destroy (HTTP) must free the session at once,
        # not after the 60 s session timeout.
        page.evaluate("() => window.s.destroy({ beacon: true })")
        wait(lambda: server.metric("apuppet_sessions") == before)
