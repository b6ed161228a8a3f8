"""The import rules of docs/architecture.md, checked on the source with `ast`.

Nothing is imported to check it, so a module that would fail to import is still read, and imports inside
functions (the lazy ones) count like any other: a lazy import is still a dependency. Imports under
`if TYPE_CHECKING:` count for the part rules (a type from the server in ops/ still ties ops/ to the server) but not
for import cycles, because they never run. `importlib.import_module` strings are not seen; only `apuppet.cli` and the
server's plugin list use them (see the architecture page).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import apuppet

ROOT = Path(apuppet.__file__).parent
PACKAGE = ROOT.name

#: What each part may import besides itself: part names, or single modules where a part may use only a few of
#: another part's modules. A part is a top-level package (api, media, ...) or a top-level module (config, cli, ...);
#: "root" is apuppet/__init__.py (the version string), which every part may read.
MAY_IMPORT: dict[str, set[str]] = {
    "root": set(),
    "__main__": {"cli"},
    # The composition root: it builds the server, the demo (server + agent) and registers every command.
    "cli": {"config", "runtime", "listeners", "api", "media", "plugins", "server", "ops", "agent", "cluster"},
    # Neutral modules that every process may load: no aiohttp, no WebRTC.
    "config": set(),
    "listeners": {"config"},
    # Who a client address stands for (an IPv6 /64): every per-address count, in api/, media/ and plugins/.
    "netaddr": set(),
    "runtime": {"config"},
    "web": set(),
    # The sans-I/O Janus core.
    "api": {"config", "netaddr"},
    # Media is handed a `media.settings.MediaSettings` by the composition root, never the whole config.
    "media": {"netaddr"},
    "plugins": {"config", "netaddr", "api", "media"},
    # aiohttp: the app, transports, connection guard, /metrics; it composes the core, the plugins' media and ops.
    "server": {"config", "listeners", "netaddr", "api", "media", "plugins", "ops", "cluster"},
    # Scale-out on Redis: routing in front of the sans-I/O core; the transports call it, it never calls them.
    "cluster": {"config", "netaddr", "api"},
    # Operator tools, run where no server may be running: never the server itself, nor the command line.
    "ops": {"config", "listeners", "runtime", "api"},
    # The device agent is a client of any Janus server: nothing of ours on the server side, only the codec half of
    # media/ (the same RTP packetizer and H.264 code the server's relay depacketizes with).
    "agent": {"config", "runtime", "apuppet.media.rtp", "apuppet.media.h264", "apuppet.media.encoder"},
}

#: Third-party packages a part must not import at all.
MUST_NOT_IMPORT: dict[str, set[str]] = {
    "api": {"aiohttp", "aiortc", "aioice"},
    "media": {"aiohttp"},
    # The plugins reach WebRTC only through media/ (`datachannel.DataChannelLink`, `viewer.Viewer`, `peers.Peers`).
    "plugins": {"aiohttp", "aiortc", "aioice"},
    "cluster": {"aiohttp", "aiortc", "aioice"},
}


@dataclass(frozen=True)
class Import:
    importer: str
    #: An apuppet module (`apuppet.server.app`, or the package for `from apuppet.server import Server`), or the
    #: top-level name of any other package (`aiohttp`).
    target: str
    path: Path
    line: int
    typing_only: bool

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.target}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    names = module.split(".")
    if names[0] != PACKAGE:
        return "third-party"
    return names[1] if len(names) > 1 else "root"


def _walk(node: ast.AST, typing_only: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, typing_only
        elif isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), True)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), typing_only)
        else:
            yield from _walk(child, typing_only)


def import_graph(root: Path) -> dict[str, list[Import]]:
    """Every module under `root` with what it imports, relative imports resolved."""
    paths = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, list[Import]] = {}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found: list[Import] = []

        def add(target: str, node: ast.stmt, typing_only: bool) -> None:
            if part_of(target) == "third-party":
                target = target.split(".")[0]
            found.append(Import(module, target, path, node.lineno, typing_only))  # noqa: B023

        for node, typing_only in _walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name, node, typing_only)
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                # `from . import metrics` imports a module; `from .app import Server` imports from one.
                submodule = f"{source}.{alias.name}"
                add(submodule if submodule in paths else source, node, typing_only)
        graph[module] = found
    return graph


def rule_breaks(graph: dict[str, list[Import]]) -> list[str]:
    breaks = []
    for module, imports in graph.items():
        part = part_of(module)
        allowed = MAY_IMPORT.get(part)
        if allowed is None:
            breaks.append(f"{module}: part {part!r} has no rule in MAY_IMPORT (add one, and to the architecture page)")
            continue
        for item in imports:
            target_part = part_of(item.target)
            if target_part == "third-party":
                if item.target in MUST_NOT_IMPORT.get(part, set()):
                    breaks.append(f"{item}: {part}/ must not import {item.target}")
            elif target_part not in (part, "root") and target_part not in allowed and item.target not in allowed:
                breaks.append(f"{item}: {part} may import only {', '.join(sorted(allowed)) or 'itself'}")
    return breaks


def cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan) over the imports that run."""
    edges = {
        m: sorted({i.target for i in imports if not i.typing_only and i.target in graph})
        for m, imports in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1 or module in edges[module]:
                found.append(sorted(group))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


# -- the rules, on apuppet -----------------------------------------------------------------------------------------
def test_no_import_cycles() -> None:
    assert cycles(import_graph(ROOT)) == []


def test_each_part_imports_only_what_it_may() -> None:
    assert rule_breaks(import_graph(ROOT)) == []


def test_the_graph_sees_the_imports_the_rules_are_about() -> None:
    """Guards the checker against reading nothing: edges that exist today, lazy and relative ones included."""
    graph = import_graph(ROOT)
    targets = {m: {i.target for i in imports} for m, imports in graph.items()}
    assert "aiohttp" in targets["apuppet.server.http"]
    assert "aiortc" in targets["apuppet.media.datachannel"]
    assert "apuppet.server" in targets["apuppet.cli"]  # lazy, inside cmd_serve
    assert "apuppet.listeners" in targets["apuppet.ops.doctor"]  # lazy and relative
    assert "apuppet.server.metrics" in targets["apuppet.server.app"]  # `from . import metrics`
    assert {"apuppet.api.gateway", "apuppet.api.session"} <= {m for m in graph if m.startswith("apuppet.api.")}


# -- the checker, on a package made to break every rule ----------------------------------------------------------
def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_reports_each_kind_of_break(tmp_path: Path) -> None:
    root = tmp_path / PACKAGE
    write(
        root,
        {
            "__init__.py": "",
            "config.py": "",
            "api/__init__.py": "",
            "api/core.py": "import aiohttp.web\nfrom .. import config\n",
            "media/__init__.py": "",
            "media/a.py": "from . import b\n",
            "media/b.py": "def f():\n    from .a import thing\n",
            "media/rtp.py": "",
            "media/peer.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .rtp2 import x\n",
            "media/rtp2.py": "from .peer import Peer\n",
            "ops/__init__.py": "",
            "ops/doctor.py": "def run():\n    from ..server import app\n",
            "server/__init__.py": "",
            "server/app.py": "from ..ops import doctor\n",
            "agent/__init__.py": "",
            "agent/video.py": "from ..media import rtp\nfrom ..media.peer import Peer\n",
            "agent/cli.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from apuppet.cli import x\n",
            "cli.py": "from .agent import cli\n",
            "newpart.py": "",
        },
    )
    graph = import_graph(root)
    breaks = rule_breaks(graph)
    expected = {
        ("apuppet.api.core", "aiohttp", "must not import"),
        ("apuppet.ops.doctor", "apuppet.server.app", "may import only"),
        ("apuppet.agent.video", "apuppet.media.peer", "may import only"),
        ("apuppet.agent.cli", "apuppet.cli", "may import only"),  # typing-only imports count for the parts
        ("apuppet.newpart", "", "has no rule"),
    }
    for importer, target, words in expected:
        assert any(importer in b and target in b and words in b for b in breaks), (importer, target, breaks)
    assert len(breaks) == len(expected), breaks
    # a -> b at the top, b -> a lazily: a cycle. ops <-> server is one too; peer -> rtp2 -> peer is none: its
    # way back is under TYPE_CHECKING.
    assert cycles(graph) == [["apuppet.media.a", "apuppet.media.b"], ["apuppet.ops.doctor", "apuppet.server.app"]]


def test_the_architecture_page_states_these_rules() -> None:
    """docs/architecture.md is what reviewers read: its table must say what MAY_IMPORT and MUST_NOT_IMPORT do."""
    page = (ROOT.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = {}
    for line in page.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        part = cells[0].strip("`").removesuffix(".py").removesuffix("/")

        def names(cell: str) -> set[str]:
            listed = {name.strip() for name in cell.split(",")} - {"—"}
            return {f"{PACKAGE}.{name}" if "." in name else name for name in listed}

        rows[part] = (names(cells[2]), names(cells[3]))
    expected = {
        part: (allowed, MUST_NOT_IMPORT.get(part, set())) for part, allowed in MAY_IMPORT.items() if part != "root"
    }
    assert rows == expected
