"""brownie: deploy a mechanism's contracts (scripts/deploy.py), then run a gridshare round on them.

    brownie run scripts/round.py --network gridshare-anvil

runs `.venv/bin/gridshare run SCENARIO --chain URL --deployment FILE --out DIR` as a subprocess (the
run needs the main environment, which brownie's cannot import). Besides deploy.py's variables:

  GRIDSHARE_SCENARIO   the scenario to run (default: scenarios/community10.toml; it must name the
                       deployed GRIDSHARE_MECHANISM)
  GRIDSHARE_OUT        the run's output folder (default: runs/brownie-<time>; it must not exist)
  GRIDSHARE_RUN_ARGS   more run options, e.g. "--prosumers 4 --no-verify-openings"
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
    scenario = os.environ.get("GRIDSHARE_SCENARIO") or str(ROOT / "scenarios" / "community10.toml")
    cmd = [str(ROOT / ".venv" / "bin" / "gridshare"), "run", scenario, "--chain", web3.provider.endpoint_uri,
           "--deployment", str(path), "--out", str(out), *shlex.split(os.environ.get("GRIDSHARE_RUN_ARGS", ""))]
    print("$ " + shlex.join(cmd), flush=True)
    status = subprocess.run(cmd).returncode
    if status:
        raise SystemExit(f"round.py: gridshare run exited with status {status}")
