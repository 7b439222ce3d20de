"""The README's figures are the benchmark files' (scripts/readme-figures), so they cannot go stale;
the README and the docstrings cite papers by authors and title, not by letters or paths."""
from __future__ import annotations

import re
import runpy
import subprocess
import sys

from .conftest import ROOT


def test_the_readme_figures_are_the_benchmark_files_figures():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme-figures")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    blocks = runpy.run_path(str(ROOT / "scripts" / "readme-figures"))["BLOCKS"]
    readme = (ROOT / "README.md").read_text()
    assert all(f"<!-- figures:{name} -->" in readme for name in blocks)


def test_papers_are_cited_by_authors_and_title_not_by_letter_or_path():
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "offchain").rglob("*.py"),
             *(ROOT / "contracts").rglob("*.sol"), *(ROOT / "scenarios").glob("*.toml")]
    bad = [f"{f.relative_to(ROOT)}: {m.group(0)!r}" for f in files
           for m in re.finditer(r"\bpaper [A-D]\b|shared/seeds|shared/research", f.read_text())]
    assert not bad, bad
