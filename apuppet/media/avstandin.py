"""A stand-in for PyAV in `apuppet serve` when nothing is recorded: aiortc without FFmpeg's libraries.

aiortc imports PyAV when it is imported (`mediastreams.py`, `rtp.py`, `rtcrtpsender.py`, `codecs/*`: `from av
import …`), which maps FFmpeg, x264, x265, libvpx, gnutls… into the process: 16 MB of the server's idle RSS
(docs/benchmarks.md, "Memory"). The server never uses them: it relays RTP packets as they come, its viewers'
tracks never yield a frame (so aiortc never makes an encoder), their sendonly transceivers never start a receiver
(so no decoder), and its data-channel peers carry no media at all. aiortc only needs PyAV's *names* there.

`install()` puts a package `av` into `sys.modules` that has those names and nothing behind them: creating one of
its classes or using one raises `PyAVNotLoaded`, and any other name is missing, both with a message saying why.
aiortc itself is imported later, with the rest of the WebRTC stack, when the server needs its first peer
connection (`peers.import_stack` calls `import_aiortc()`): every module but `contrib`, which the server does not
use. If that fails because aiortc asks for a name the stand-in lacks (a later aiortc), the stand-in and the aiortc
modules bound to it are taken out again and PyAV is loaded as usual: more memory, nothing broken.
`tests/media/test_avstandin.py` checks that the stand-in has every name this aiortc imports, and that a real watch
and a real data channel work in a server running with it.

Only the composition root calls it, before anything imports aiortc, and only for `serve` without
`record_sessions` (a recording is muxed by PyAV in the server). The agent, `demo` and the tests keep real PyAV.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from types import ModuleType
from typing import Any, NoReturn

log = logging.getLogger(__name__)

#: The names aiortc 1.16 imports from PyAV (module → names), and the ones its code reads as `av.<name>`.
NAMES: dict[str, tuple[str, ...]] = {
    "av": ("AudioFrame", "AudioResampler", "CodecContext", "FFmpegError", "Packet", "VideoFrame"),
    "av.frame": ("Frame",),
    "av.packet": ("Packet",),
    "av.video": (),
    "av.video.codeccontext": ("VideoCodecContext",),
    "av.video.frame": ("PictureType", "VideoFrame"),
}

_installed = False
_active = False


class PyAVNotLoaded(RuntimeError):
    """Something in `apuppet serve` reached for PyAV, which the stand-in replaces there."""


def _refuse(what: str) -> NoReturn:
    raise PyAVNotLoaded(
        f"{what}: PyAV is not loaded in `apuppet serve` without record_sessions (apuppet.media.avstandin)"
    )


class _Inert(type):
    """The class of the stand-in classes: reading anything but what a class always has (isinstance checks, repr,
    its name) refuses."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        _refuse(f"{cls.__module__}.{cls.__name__}.{name}")


def _standin_class(module: str, name: str) -> type:
    def refuse(self: object, *args: object, **kwargs: object) -> None:
        _refuse(f"{module}.{name}()")

    # FFmpegError is caught in `except` clauses: it must be an exception class that is never raised.
    bases: tuple[type, ...] = (Exception,) if name == "FFmpegError" else (object,)
    namespace = {"__module__": module} if name == "FFmpegError" else {"__module__": module, "__init__": refuse}
    return _Inert(name, bases, namespace)


class _StandinModule(ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        # An AttributeError (which PyAVNotLoaded is not) makes `from av import <name>` an ImportError, which
        # `install()` needs to see; any other read gets the explanation.
        raise AttributeError(f"{self.__name__}.{name}: not in the PyAV stand-in (apuppet.media.avstandin)")


def standin_modules() -> dict[str, ModuleType]:
    """The stand-in's modules by name, not installed."""
    modules: dict[str, ModuleType] = {}
    for name, attributes in NAMES.items():
        module: ModuleType = _StandinModule(name, "PyAV stand-in of apuppet serve (apuppet.media.avstandin)")
        module.__path__ = []  # a package: `import av.video.frame` looks its submodules up in sys.modules
        for attribute in attributes:
            setattr(module, attribute, _standin_class(name, attribute))
        modules[name] = module
    for name, module in modules.items():
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(modules[parent], child, module)
    # One class under both of its names, as in PyAV.
    modules["av.video.frame"].VideoFrame = modules["av"].VideoFrame  # type: ignore[attr-defined]
    modules["av.packet"].Packet = modules["av"].Packet  # type: ignore[attr-defined]
    return modules


def _aiortc_modules() -> list[str]:
    import aiortc

    found = ["aiortc"]
    for info in pkgutil.walk_packages(aiortc.__path__, "aiortc."):
        if not info.name.startswith("aiortc.contrib"):
            found.append(info.name)
    return found


def _forget(prefixes: tuple[str, ...]) -> None:
    for name in [n for n in sys.modules if n in prefixes or n.startswith(tuple(p + "." for p in prefixes))]:
        del sys.modules[name]


def install() -> bool:
    """Put the stand-in in place of PyAV, for aiortc to be imported with it later (`import_aiortc`); False (and
    PyAV untouched) when aiortc or PyAV is already imported."""
    global _installed
    if _installed:
        return True
    if "av" in sys.modules or "aiortc" in sys.modules:
        return False
    sys.modules.update(standin_modules())
    _installed = True
    return True


def import_aiortc() -> None:
    """Import aiortc: on the stand-in if it is installed and suffices, else (or without it) on PyAV."""
    global _installed, _active
    if _installed and not _active and "aiortc" not in sys.modules:
        try:
            for name in _aiortc_modules():
                importlib.import_module(name)
        except ImportError as exc:
            if not (exc.name or "").startswith("av"):
                raise  # aiortc or what it needs is broken: PyAV would not mend it
            # Only aiortc's modules and the stand-in's are forgotten: nothing else imports either while this runs.
            _forget(("aiortc", "av"))
            _installed = False
            log.warning("PyAV stand-in not used (%s): loading PyAV", exc)
        else:
            _active = True
    importlib.import_module("aiortc")


def installed() -> bool:
    """Whether the stand-in is in place of PyAV (aiortc may not be imported yet)."""
    return _installed


def active() -> bool:
    """Whether this process runs aiortc on the stand-in (False until aiortc is imported)."""
    return _active
