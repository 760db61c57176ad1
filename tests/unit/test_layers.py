"""Which packages may import which: the capture agent and the transports know nothing of the
service, the service nothing of the agent, and only the command line wires the two together."""

from __future__ import annotations

import ast
from pathlib import Path

import dronewatch

SRC = Path(dronewatch.__file__).parent


def imports_of(path: Path) -> set[str]:
    """Every dronewatch module a file imports, at the top, in functions or for type checking."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in found if n == "dronewatch" or n.startswith(("dronewatch.", "."))}


def modules_in(*packages: str) -> dict[str, set[str]]:
    """Module path (relative to src/dronewatch) -> what it imports, for the packages given."""
    return {
        str(path.relative_to(SRC)): imports_of(path)
        for package in packages
        for path in sorted((SRC / package).rglob("*.py"))
    }


def uses(imports: set[str], package: str) -> bool:
    return any(name == package or name.startswith(package + ".") for name in imports)


def test_agent_and_transport_import_nothing_of_the_service() -> None:
    """agent/ and transport/ import no dronewatch.api (nor the command line)."""
    bad = {
        module: sorted(
            n for n in names if uses({n}, "dronewatch.api") or uses({n}, "dronewatch.cli")
        )
        for module, names in modules_in("agent", "transport").items()
    }
    assert {m: n for m, n in bad.items() if n} == {}


def test_service_imports_nothing_of_the_agent() -> None:
    """api/ imports no dronewatch.agent (nor the command line)."""
    bad = {
        module: sorted(
            n for n in names if uses({n}, "dronewatch.agent") or uses({n}, "dronewatch.cli")
        )
        for module, names in modules_in("api").items()
    }
    assert {m: n for m, n in bad.items() if n} == {}


def test_only_the_command_line_wires_service_and_agent() -> None:
    """The modules that import both dronewatch.api and dronewatch.agent are all in cli/, and
    `serve` is one of them (it runs the capture child of `serve -i`)."""
    everything = {
        str(path.relative_to(SRC)): imports_of(path) for path in sorted(SRC.rglob("*.py"))
    }
    both = {
        module
        for module, names in everything.items()
        if uses(names, "dronewatch.api") and uses(names, "dronewatch.agent")
    }
    assert both and all(module.startswith("cli/") for module in both), both
    assert "cli/serve.py" in both


def test_imports_are_absolute() -> None:
    """No relative imports (the checks above read absolute names only), and the reader finds
    the imports made inside functions."""
    relative = {
        module: sorted(n for n in names if n.startswith("."))
        for module, names in modules_in(".").items()
    }
    assert {m: n for m, n in relative.items() if n} == {}
    assert "dronewatch.agent.supervisor" in imports_of(SRC / "cli" / "serve.py")
