"""What `apuppet serve` loads: the server never encodes or grabs frames, so numpy (and our encoder, which needs
PyAV) must stay out of its process. PyAV itself, which aiortc imports, is replaced by a stand-in in `apuppet serve`
unless it records sessions: tests/media/test_avstandin.py."""

from __future__ import annotations

import subprocess
import sys

SERVE_IMPORTS = """
import sys
from apuppet.cli import build_parser
build_parser()  # registers every subcommand, the agent's and demo's included
import apuppet.server, apuppet.plugins.streaming, apuppet.plugins.textroom
loaded = sorted(m for m in ("numpy", "apuppet.media.encoder", "apuppet.agent.phone") if m in sys.modules)
print(",".join(loaded))
"""


def test_serve_does_not_import_numpy_or_the_encoder() -> None:
    out = subprocess.run([sys.executable, "-c", SERVE_IMPORTS], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "", f"loaded by `apuppet serve`: {out.stdout.strip()}"


def test_the_agent_still_finds_its_encoder() -> None:
    """The lazy import in the agent's video loop resolves (the demo and the agent tests stream through it)."""
    code = "from apuppet.agent import video; "
    code += "from apuppet.media.encoder import H264Encoder; print(H264Encoder(64, 48).width)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "64"
