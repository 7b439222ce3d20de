"""Lets `brownie run scripts/deploy.py` work in a checkout whose path has a dot in a folder name
(/tmp/tmp.AbC123/p, /home/first.last/gridshare). Not a brownie script: scripts/brownie-setup copies
it into .venv-brownie's site-packages as gridshare_brownie_script_names.py, with a .pth file that
imports it when that environment's python starts.

brownie 1.22.2 imports a script by a module name it makes from the script's resolved path, with "/"
first on sys.path (brownie/project/scripts.py, `_import_from_path`):
`".".join(path.parts[1:-1]) + "." + path.stem`. For /tmp/tmp.AbC123/p/scripts/deploy.py that is
"tmp.tmp.AbC123.p.scripts.deploy", which Python reads as the folders /tmp/tmp/AbC123/p/scripts:
`ModuleNotFoundError: No module named 'tmp.tmp'` (upstream eth-brownie/brownie#1081, open). That
function is compiled with mypyc, so it cannot be patched from outside; what its name means can be
told to the import system. The finder below, first on sys.meta_path, knows the name brownie makes for
each script of the brownie project around the current folder (the nearest folder upwards with a
brownie-config.yaml, where brownie finds the project) and loads that file under it, with empty
packages for the names in between ("tmp.tmp", "tmp.tmp.AbC123", ...). It answers no other name, and
none at all when no folder on the project's path has a dot (brownie's own import works there).
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path


class _EmptyPackage(importlib.abc.Loader):
    def create_module(self, spec):
        return None  # the default module

    def exec_module(self, module):
        pass


def _scripts_folder(root: Path) -> Path:
    """project_structure: scripts: of brownie-config.yaml, brownie's default "scripts" otherwise."""
    import yaml  # brownie's dependency; loaded already when brownie imports a script

    config = yaml.safe_load((root / "brownie-config.yaml").read_text(encoding="utf-8")) or {}
    return root / ((config.get("project_structure") or {}).get("scripts") or "scripts")


def brownie_names(here: Path) -> dict[str, Path | None]:
    """brownie's module name for each script of the project around `here` whose path has a dot in a
    folder name -> its file, and each name in between (with two parts or more) -> None."""
    here = here.resolve()
    root = next((d for d in (here, *here.parents) if (d / "brownie-config.yaml").is_file()), None)
    if root is None:
        return {}
    names: dict[str, Path | None] = {}
    for script in sorted(_scripts_folder(root).rglob("*.py")):
        path = script.resolve()  # brownie resolves the script's path too
        folders = path.parts[1:-1]
        if not any("." in folder for folder in folders):
            continue
        parts = ".".join((*folders, path.stem)).split(".")
        names[".".join(parts)] = path
        for end in range(2, len(parts)):
            names.setdefault(".".join(parts[:end]), None)
    return names


class BrownieScriptNames(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self._top: str | None = None
        self._names: dict[str, Path | None] | None = None

    def find_spec(self, fullname, path=None, target=None):
        top, dot, _ = fullname.partition(".")
        if not dot:
            return None
        if self._top is None:
            try:
                parts = Path.cwd().resolve().parts
            except OSError:
                parts = ()
            self._top = parts[1] if len(parts) > 1 else ""
        if top != self._top:  # every other import: brownie's names start with the project's first folder
            return None
        if self._names is None:
            self._names = {}  # while looking: imports made meanwhile find nothing here
            try:
                self._names = brownie_names(Path.cwd())
            except Exception:  # never break an import: brownie's own error then says what is wrong
                pass
        if fullname not in self._names:
            return None
        file = self._names[fullname]
        if file is None:
            return importlib.machinery.ModuleSpec(fullname, _EmptyPackage(), is_package=True)
        return importlib.util.spec_from_file_location(fullname, file)


if not any(type(finder).__name__ == BrownieScriptNames.__name__ for finder in sys.meta_path):
    sys.meta_path.insert(0, BrownieScriptNames())
