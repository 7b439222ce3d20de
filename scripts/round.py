"""brownie: deploy the market contracts (scripts/deploy.py), then run a gridshare round on them.

    brownie run scripts/round.py --network gridshare-anvil

runs `.venv/bin/gridshare demo --chain URL --deployment FILE --out DIR` as a subprocess (the demo
needs the main environment, which brownie's cannot import). Besides deploy.py's variables:

  GRIDSHARE_OUT        the demo's output folder (default: runs/brownie-<time>; it must not exist)
  GRIDSHARE_DEMO_ARGS  more demo options, e.g. "--prosumers 4 --no-verify-openings"
"""
from __future__ import annotations

import datetime as dt
import os
import shlex
import subprocess
import sys
from pathlib import Path

from brownie import web3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy import ROOT, deploy  # noqa: E402  (the sibling script)


def main() -> None:
    _, path = deploy()
    out = os.environ.get("GRIDSHARE_OUT") or ROOT / "runs" / f"brownie-{dt.datetime.now():%Y%m%d-%H%M%S}"
    cmd = [str(ROOT / ".venv" / "bin" / "gridshare"), "demo", "--chain", web3.provider.endpoint_uri,
           "--deployment", str(path), "--out", str(out), *shlex.split(os.environ.get("GRIDSHARE_DEMO_ARGS", ""))]
    print("$ " + shlex.join(cmd), flush=True)
    status = subprocess.run(cmd).returncode
    if status:
        raise SystemExit(f"round.py: gridshare demo exited with status {status}")
