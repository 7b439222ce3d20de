"""Compile every contract under ``contracts/`` in one standard-JSON call (npm solc via scripts/solc).

Artifacts are cached in ``build/contracts/<sha256>.json``, keyed by the sources, the settings and the
compiler version, so a second call starts no node process.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CompileError

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = ROOT / "contracts"
BUILD_DIR = ROOT / "build" / "contracts"
SOLC = ROOT / "scripts" / "solc"
NODE_MODULES = ROOT / "node_modules"

SETTINGS = {
    "evmVersion": "prague",
    "optimizer": {"enabled": True, "runs": 200},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object",
                                     "evm.deployedBytecode.immutableReferences"]}},
}


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list
    bytecode: str  # 0x-prefixed creation code
    source: str = ""
    deployed: str = ""  # 0x-prefixed runtime code (without immutables filled in)
    immutables: tuple = ()  # (start, length) byte ranges of `deployed` that deployment fills in

    def runs(self, code: bytes) -> bool:
        """Whether deployed ``code`` is this contract's runtime code (immutables aside)."""
        compiled = bytearray.fromhex(self.deployed.removeprefix("0x"))
        code = bytearray(code)
        if len(code) != len(compiled):
            return False
        for start, length in self.immutables:
            code[start:start + length] = compiled[start:start + length]
        return code == compiled


def _compiler_version() -> str:
    """The npm solc version from its package.json (no node start)."""
    try:
        return json.loads((NODE_MODULES / "solc" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "unknown"


EXTRA_SOURCES: list[Path] = []  # folders of mechanisms' rule contracts outside contracts/ (add_sources)


def add_sources(folder: Path) -> None:
    """Compile the .sol files under ``folder`` (inside the project) with the contracts."""
    folder = Path(folder).resolve()
    if folder not in EXTRA_SOURCES:
        EXTRA_SOURCES.append(folder)


def remove_sources(folder: Path) -> None:
    folder = Path(folder).resolve()
    if folder in EXTRA_SOURCES:
        EXTRA_SOURCES.remove(folder)


def _sources() -> dict[str, dict]:
    files = sorted({f for d in (CONTRACTS_DIR, *EXTRA_SOURCES) for f in d.rglob("*.sol")})
    return {f.relative_to(ROOT).as_posix(): {"content": f.read_text()} for f in files}


def _cache_key(sources: dict, version: str) -> str:
    blob = json.dumps({"sources": sources, "settings": SETTINGS, "compiler": version}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _line_col(content: str, offset: int) -> tuple[int, int]:
    before = content.encode()[:max(offset, 0)].decode(errors="replace")
    line = before.count("\n") + 1
    col = len(before) - (before.rfind("\n") + 1) + 1
    return line, col


def _format_error(err: dict, sources: dict) -> str:
    msg = err.get("message", "").strip()
    loc = err.get("sourceLocation")
    kind = err.get("type", "Error")
    if loc and loc.get("file"):
        file = loc["file"]
        content = sources.get(file, {}).get("content")
        if content is None:
            path = ROOT / file
            content = path.read_text() if path.exists() else ""
        line, col = _line_col(content, loc.get("start", 0))
        return f"{file}:{line}:{col}: {kind}: {msg}"
    first = (err.get("formattedMessage") or msg).strip().splitlines()
    return f"{kind}: {first[0] if first else msg}"


def _load(path: Path) -> dict[str, Artifact]:
    data = json.loads(path.read_text())
    return {name: Artifact(**{**a, "immutables": tuple(tuple(r) for r in a.get("immutables", ()))})
            for name, a in data.items()}


def compiled() -> bool:
    """Whether the current sources are compiled already (a run then loads them in milliseconds)."""
    sources = _sources()
    return bool(sources) and (BUILD_DIR / f"{_cache_key(sources, _compiler_version())}.json").exists()


def compile_contracts(force: bool = False) -> dict[str, Artifact]:
    """All contracts by name; compiled once per distinct (sources, settings, compiler)."""
    sources = _sources()
    if not sources:
        raise CompileError(f"no .sol files under {CONTRACTS_DIR}")
    version = _compiler_version()
    key = _cache_key(sources, version)
    cache = BUILD_DIR / f"{key}.json"
    if cache.exists() and not force:
        try:
            return _load(cache)
        except (ValueError, TypeError, OSError):
            pass

    import solcx  # imported lazily: a cache hit needs neither py-solc-x nor node
    from solcx.exceptions import SolcError

    std_input = {"language": "Solidity", "sources": sources, "settings": SETTINGS}
    try:
        output = solcx.compile_standard(std_input, solc_binary=str(SOLC), allow_empty=True)
    except SolcError as exc:
        # py-solc-x raises on any error-severity entry; keep its output if it parsed one
        output = getattr(exc, "stdout_data", None)
        try:
            output = json.loads(output) if isinstance(output, str) else None
        except ValueError:
            output = None
        if not output:
            raise CompileError(str(exc)) from exc
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(_format_error(e, sources) for e in errors))

    artifacts: dict[str, Artifact] = {}
    for file, contracts in output.get("contracts", {}).items():
        if file.startswith("@"):  # libraries (OpenZeppelin)
            continue
        for name, c in contracts.items():
            evm = c.get("evm", {})
            refs = evm.get("deployedBytecode", {}).get("immutableReferences", {})
            artifacts[name] = Artifact(name=name, abi=c.get("abi", []), bytecode="0x" + evm.get("bytecode", {}).get("object", ""),
                                       source=file, deployed="0x" + evm.get("deployedBytecode", {}).get("object", ""),
                                       immutables=tuple(sorted((r["start"], r["length"]) for v in refs.values() for r in v)))
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({n: a.__dict__ for n, a in artifacts.items()}))
    os.replace(tmp, cache)
    return artifacts
