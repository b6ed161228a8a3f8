"""The x11 source on a real X server (Xvfb) with a real X client in another process.

The client paints a red square where the pointer is pressed and reports the events it gets, so that the
test sees both sides: what the source captured and what XTest delivered.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from apuppet.agent.sources.x11 import X11Source

pytestmark = pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")

CLIENT = r"""
import json, sys, time
from Xlib import X, display
from Xlib.protocol import event
d = display.Display()
s = d.screen()
w = s.root.create_window(0, 0, s.width_in_pixels, s.height_in_pixels, 0, s.root_depth, X.InputOutput,
                         X.CopyFromParent, background_pixel=0x203040,
                         event_mask=X.ExposureMask | X.ButtonPressMask | X.ButtonReleaseMask | X.KeyPressMask
                         | X.Button1MotionMask)
gc = w.create_gc(foreground=0xFF0000)
CLIPBOARD = d.intern_atom("CLIPBOARD")
UTF8 = d.intern_atom("UTF8_STRING")
copies = 0
w.map()
d.sync()
def say(**kw):
    kw["t"] = time.monotonic()
    print(json.dumps(kw), flush=True)
say(ready=True)
while True:
    e = d.next_event()
    if e.type == X.ButtonPress:
        w.fill_rectangle(gc, e.event_x - 20, e.event_y - 20, 40, 40)
        say(press=[e.event_x, e.event_y])
    elif e.type == X.ButtonRelease:
        say(release=[e.event_x, e.event_y])
    elif e.type == X.MotionNotify:
        say(motion=[e.event_x, e.event_y])
    elif e.type == X.MappingNotify:
        d.refresh_keyboard_mapping(e)
    elif e.type == X.KeyPress:
        keysym = d.keycode_to_keysym(e.detail, 1 if e.state & X.ShiftMask else 0)
        if not 0xFFE1 <= keysym <= 0xFFEE:  # modifiers
            say(key=keysym)
        if keysym == ord("c"):  # "copy": take the CLIPBOARD with a new text
            copies += 1
            w.set_selection_owner(CLIPBOARD, X.CurrentTime)
    elif e.type == X.SelectionRequest:
        prop = X.NONE
        if e.target == UTF8:
            text = f"copied {copies}: ünïcode, 100%".encode()
            e.requestor.change_property(e.property, UTF8, 8, text)
            prop = e.property
        e.requestor.send_event(event.SelectionNotify(time=e.time, requestor=e.requestor, selection=e.selection,
                                                     target=e.target, property=prop))
    d.flush()
"""


@pytest.fixture
def xvfb():
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1000x700x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as fh:
        number = fh.readline().strip()
    try:
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def client(xvfb):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, env={**os.environ, "DISPLAY": xvfb}, stdout=asyncio.subprocess.PIPE
    )
    events = Events(proc)
    await events.next("ready")
    try:
        yield events
    finally:
        proc.kill()
        await proc.wait()


class Events:
    def __init__(self, proc):
        self.proc = proc

    async def next(self, kind: str, timeout: float = 10.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                assert line, "the X client exited"
                event = json.loads(line)
                if kind in event:
                    return event


def color_at(img: np.ndarray, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in img[y, x])


async def test_capture_and_input(xvfb, client):
    src = X11Source(display=xvfb)
    await src.start()
    try:
        assert (src.width, src.height) == (1000, 700)
        img = src.grab(force=True)
        assert img.shape == (700, 1000, 3)
        assert color_at(img, 500, 500) == (0x20, 0x30, 0x40)
        assert src.grab() is None  # nothing changed

        await src.tap(300, 200, 300)
        press = await client.next("press")
        release = await client.next("release")
        assert press["press"] == [300, 200]
        assert release["t"] - press["t"] >= 0.25  # a long press stays down
        for _ in range(50):
            img = src.grab()
            if img is not None:
                break
            await asyncio.sleep(0.05)
        assert img is not None and color_at(img, 300, 200) == (255, 0, 0)

        await src.swipe(100, 600, 400, 600, 200)
        assert (await client.next("press"))["press"] == [100, 600]
        motion = await client.next("motion")
        assert 100 <= motion["motion"][0] <= 400
        assert (await client.next("release"))["release"] == [400, 600]

        await src.key("A")
        assert (await client.next("key"))["key"] == ord("A")
        await src.key("Enter")
        assert (await client.next("key"))["key"] == 0xFF0D  # Return
        await src.paste("hi!")
        assert [(await client.next("key"))["key"] for _ in range(3)] == [ord("h"), ord("i"), ord("!")]
        info = src._display.display.info
        keymap = lambda: src._display.get_keyboard_mapping(  # noqa: E731
            info.min_keycode, info.max_keycode - info.min_keycode + 1
        )
        before = keymap()
        await src.paste("ü€")  # not on a US keymap: typed through a borrowed keycode
        assert [(await client.next("key"))["key"] for _ in range(2)] == [0xFC, 0x010020AC]
        # ...and given back once clients have had time to look it up.
        async with asyncio.timeout(5):
            while keymap() != before:
                await asyncio.sleep(0.05)
        await src.global_action("back")
        assert (await client.next("key"))["key"] == 0xFF1B  # Escape
        await src.global_action("notifications")  # no X equivalent: ignored, no error

        # An application copies: the source reports each new CLIPBOARD text, once.
        copied: list[str] = []
        src.on_clipboard = copied.append
        for n in (1, 2):
            await src.key("c")
            async with asyncio.timeout(10):
                while len(copied) < n:
                    await asyncio.sleep(0.05)
        await asyncio.sleep(1.2)  # two more polls: no change, no report
        assert copied == ["copied 1: ünïcode, 100%", "copied 2: ünïcode, 100%"]
    finally:
        await src.stop()
        await src.stop()


# python-xlib leaves the sockets it tried (Unix, then TCP) unclosed when no display answers; they are its own.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_no_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(RuntimeError, match="no X display"):
        await X11Source().start()
    with pytest.raises(RuntimeError, match="cannot open X display"):
        await X11Source(display=":987").start()


async def test_agent_streams_and_drives_an_x_display(xvfb, client, server):
    """The whole path: X display → agent → server → viewer, and a viewer's tap back to the X client."""
    from apuppet.agent.agent import Agent, AgentOptions

    from ..conftest import SECRET
    from ..viewer import Viewer, near

    agent = Agent(AgentOptions(server_url=server.url, secret=SECRET, name="X"), X11Source(display=xvfb))
    task = asyncio.get_running_loop().create_task(agent.run())
    try:
        async with asyncio.timeout(20):
            await agent.connected.wait()
        assert (agent.geometry.width, agent.geometry.height) == (800, 560)  # 1000x700 scaled to 800 wide
        creds = agent.credentials
        async with Viewer(server.url, SECRET, creds.session, creds.password) as v:
            assert await v.message(lambda t: t.startswith("stream")) == "streamingVideoResolution,800,560"
            await v.until(lambda f: f.shape == (560, 800, 3) and near(f, 400, 300, (0x20, 0x30, 0x40)), timeout=20)
            v.send("tap,240,160,50")  # stream pixels → (300, 200) on the display
            assert (await client.next("press"))["press"] == [300, 200]
            await v.until(lambda f: near(f, 240, 160, (255, 0, 0), 60))
            v.send("key,c")  # the X client copies: the viewer gets the text, escaped
            assert await v.message(lambda t: t.startswith("copy,")) == "copy,copied 1: ünïcode%2C 100%25"
    finally:
        agent.stop()
        async with asyncio.timeout(15):
            await task
