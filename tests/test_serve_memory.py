"""What `apuppet serve` loads beside the server: not the agent's or the operator's commands (their modules, ~1 MB
of the server's memory, are for other processes; issue 16 §5). tests/test_imports.py keeps numpy and the encoder
out, tests/media/test_avstandin.py PyAV."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# `apuppet serve` as `python -m apuppet serve` runs it, with a configuration it refuses: it parses its command line
# (the point here) and stops before listening. What it loaded is printed at exit.
SERVE = """
import atexit, sys
def report():
    print("LOADED " + ",".join(sorted(m for m in sys.modules if m.startswith(("apuppet.agent", "apuppet.ops.cli")))))
atexit.register(report)
from apuppet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def loaded_by(*argv: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    out = subprocess.run([sys.executable, "-c", SERVE, *argv], capture_output=True, text=True, timeout=60)
    lines = [line for line in out.stdout.splitlines() if line.startswith("LOADED ")]
    assert lines, out.stdout + out.stderr
    return set(filter(None, lines[-1].removeprefix("LOADED ").split(","))), out


def test_serve_leaves_the_agent_and_operator_commands_unloaded(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("web_http_port: not-a-port\n")
    modules, out = loaded_by("serve", "--config", str(config))
    assert out.returncode != 0 and "web_http_port" in out.stdout + out.stderr, out.stdout + out.stderr
    assert modules == set(), modules
    # The other commands are still there for everything but `serve`.
    modules, out = loaded_by("--help")
    assert out.returncode == 0 and "agent" in out.stdout and "demo" in out.stdout, out.stdout
    assert {"apuppet.agent.cli", "apuppet.ops.cli"} <= modules, modules
