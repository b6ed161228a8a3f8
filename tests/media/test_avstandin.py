"""`apuppet serve` without `record_sessions` runs aiortc on a PyAV stand-in (`media/avstandin.py`): the stand-in has
every name this aiortc imports, an aiortc needing more falls back to PyAV, and a real server process on it (its
own `python -m apuppet serve`) streams the demo phone to a decoding viewer and carries its taps over the data
channel without FFmpeg's libraries mapped. With `record_sessions` it loads PyAV as before."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import aiortc
import pytest

from apuppet.agent import phone as ph
from apuppet.media import avstandin

from ..agent.conftest import SECRET, start_agent
from ..agent.viewer import Viewer, near
from ..served import Served, serve

COUNTER_BG = (250, 240, 225)


def pyav_names_imported_by(package: Path) -> set[tuple[str, str]]:
    """(module, name) for every `from av… import name`, `import av…` and `av.<name>…` read in `package`'s code
    (aiortc's contrib left out: the server does not import it)."""
    found: set[tuple[str, str]] = set()
    for path in package.rglob("*.py"):
        if "contrib" in path.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "av":
                found |= {(str(node.module), alias.name) for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {(alias.name, "") for alias in node.names if alias.name.split(".")[0] == "av"}
            elif isinstance(node, ast.Attribute):
                chain: list[str] = []
                value: ast.expr = node
                while isinstance(value, ast.Attribute):
                    chain.insert(0, value.attr)
                    value = value.value
                if isinstance(value, ast.Name) and value.id == "av" and chain:
                    found.add(("av", ".".join(chain)))
    return found


def resolve(modules: dict[str, ModuleType], module: str, dotted: str) -> bool:
    """Whether `module` (a stand-in module name) has `dotted`, descending into stand-in submodules only (what a
    class of theirs holds is used at run time, never at import)."""
    if module not in modules:
        return False
    current: object = modules[module]
    for part in dotted.split(".") if dotted else ():
        if not hasattr(current, part):
            return False
        current = getattr(current, part)
        if not isinstance(current, ModuleType):
            return True
    return True


def test_the_stand_in_has_every_name_this_aiortc_takes_from_pyav() -> None:
    modules = avstandin.standin_modules()
    wanted = pyav_names_imported_by(Path(aiortc.__file__).parent)
    assert ("av", "AudioFrame") in wanted and ("av.video.codeccontext", "VideoCodecContext") in wanted
    missing = sorted(f"{module}:{name}" for module, name in wanted if not resolve(modules, module, name))
    assert missing == [], f"aiortc {aiortc.__version__} needs more of PyAV than apuppet.media.avstandin has"


def test_a_stand_in_class_refuses_to_be_used() -> None:
    av = avstandin.standin_modules()["av"]
    with pytest.raises(avstandin.PyAVNotLoaded, match="record_sessions"):
        av.Packet(b"\x00")
    with pytest.raises(avstandin.PyAVNotLoaded):
        av.CodecContext.create("h264", "r")
    with pytest.raises(AttributeError, match="stand-in"):
        av.open  # noqa: B018
    assert issubclass(av.FFmpegError, Exception)
    assert not isinstance(object(), av.VideoFrame)


PROBE = """
import sys
from apuppet.media import avstandin
{patch}
installed = avstandin.install()
waiting = "aiortc" not in sys.modules  # installing imports nothing: aiortc comes with the first peer connection
avstandin.import_aiortc()
import aiortc, av
print(installed, waiting, avstandin.active(), hasattr(av, "__file__"), "aiortc.rtcpeerconnection" in sys.modules)
"""


def probe(patch: str = "") -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(patch=patch)], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.split()


def test_install_runs_aiortc_on_the_stand_in() -> None:
    assert probe() == ["True", "True", "True", "False", "True"]


def test_an_aiortc_that_needs_more_than_the_stand_in_gets_pyav() -> None:
    """As a later aiortc importing a name the stand-in lacks would: PyAV is loaded and aiortc works as usual."""
    patch = 'avstandin.NAMES["av"] = tuple(n for n in avstandin.NAMES["av"] if n != "AudioResampler")'
    assert probe(patch) == ["True", "True", "False", "True", "True"]


@pytest.mark.timeout(180)
async def test_serve_without_recording_streams_and_carries_taps_on_the_stand_in(
    tmp_path: Path, servers: list[Served]
) -> None:
    served = await serve(tmp_path, {"record_sessions": False})
    servers.append(served)
    assert any("PyAV not loaded" in line for line in served.log), "".join(served.log)
    agent = await start_agent(served.url)
    try:
        creds = agent.agent.credentials
        async with Viewer(served.url, SECRET, creds.session, creds.password) as v:
            # Video: the viewer (real PyAV, in this process) decodes the relayed H.264 of the home screen.
            await v.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=30)
            # Data channel: the tap goes through the server's textroom to the phone, which opens Counter.
            v.send("tap,72,156,60")
            await v.until(lambda f: near(f, 20, 400, COUNTER_BG), timeout=20)
    finally:
        await agent.stop()
    assert not served.maps_pyav()
    assert served.process.returncode is None, "the server is still serving"


@pytest.mark.timeout(120)
async def test_serve_with_recording_loads_pyav(tmp_path: Path, servers: list[Served]) -> None:
    served = await serve(tmp_path, {"record_sessions": True})
    servers.append(served)
    assert served.maps_pyav()
    assert not any("PyAV not loaded" in line for line in served.log)
