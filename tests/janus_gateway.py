"""The real Janus gateway (Debian's `janus`) configured as aPuppet's Ansible configures it: HTTP transport under
`/janus`, the textroom and streaming plugins with string ids, an API secret. For the compatibility tests (the
agent's and the web-admin's) and the click-latency benchmark's comparison run."""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .ports import free_port


def janus_installed() -> bool:
    return bool(shutil.which("janus") and glob.glob("/usr/lib/*/janus"))


class JanusGateway:
    def __init__(self, folder: Path, secret: str) -> None:
        port = free_port()
        lib = sorted(glob.glob("/usr/lib/*/janus"))[0]
        keep = {"libjanus_textroom.so", "libjanus_streaming.so"}
        plugins = ",".join(sorted({Path(p).name for p in glob.glob(f"{lib}/plugins/*.so")} - keep))
        transports = ",".join(
            sorted({Path(p).name for p in glob.glob(f"{lib}/transports/*.so")} - {"libjanus_http.so"})
        )
        (folder / "janus.jcfg").write_text(
            f'general: {{ configs_folder = "{folder}" plugins_folder = "{lib}/plugins" '
            f'transports_folder = "{lib}/transports" events_folder = "{lib}/events" '
            f'loggers_folder = "{lib}/loggers" debug_level = 3 api_secret = "{secret}" }}\n'
            f'plugins: {{ disable = "{plugins}" }}\ntransports: {{ disable = "{transports}" }}\n'
            "events: { broadcast = false }\n"
        )
        (folder / "janus.plugin.textroom.jcfg").write_text('general: { json = "indented" string_ids = true }\n')
        (folder / "janus.plugin.streaming.jcfg").write_text("general: { string_ids = true }\n")
        (folder / "janus.transport.http.jcfg").write_text(
            f'general: {{ json = "indented" base_path = "/janus" http = true port = {port} ip = "127.0.0.1" '
            "https = false }\nadmin: { admin_http = false }\n"
        )
        self.proc = subprocess.Popen(
            [shutil.which("janus") or "janus", "-F", str(folder), "-C", str(folder / "janus.jcfg")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("Janus did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
