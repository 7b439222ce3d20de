"""A run's secrets on disk, kept as the run goes, so that a killed run can be resumed
(``gridshare resume RUN_DIR``) and a cancelled round refunded (``gridshare refund``).

``RUN_DIR/keys/`` (mode 0700) holds one append-only JSON-lines file per party (mode 0600):

* ``accounts``: the seed of the run's accounts on a node (never a public constant);
* ``round<i>-coordinator``: the coordinator's Paillier key of round i;
* ``round<i>-<address>``: a participant's mask secret and each submission of each attempt (reveal,
  salt, ciphertext, next mask point, plaintext and randomness), each written before the
  transaction that makes it public is sent.

A party's file holds that party's secrets only; the run's process holds every party's, as the
simulated parties of a demo all live in it. Whoever reads ``keys/`` can act as every party of
the run: keep it as you would a wallet.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable


class PartySecrets:
    """One party's secrets: a key -> JSON value map, each new entry appended and flushed to disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._values: dict[str, Any] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # cut short by a kill: what it held was never used
                self._values[entry["k"]] = entry["v"]

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def put(self, key: str, value: Any) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(json.dumps({"k": key, "v": value}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._values[key] = value

    def keep(self, key: str, make: Callable[[], Any]) -> Any:
        """The value kept under ``key``, or ``make()``'s, kept first."""
        if key not in self._values:
            self.put(key, make())
        return self._values[key]


class KeyStore:
    """``folder`` (RUN_DIR/keys): one :class:`PartySecrets` per party."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        self._parties: dict[str, PartySecrets] = {}

    def party(self, name: str) -> PartySecrets:
        name = name.lower()
        if name not in self._parties:
            self._parties[name] = PartySecrets(self.folder / f"{name}.jsonl")
        return self._parties[name]

    def account_seed(self) -> bytes:
        """The run's account seed (made once, at random)."""
        return bytes.fromhex(self.party("accounts").keep("seed", lambda: secrets.token_hex(32)))
