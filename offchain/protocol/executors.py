"""Where participants' local optimisations run: in this process, or on a Dask cluster.

A participant plans its solve (:class:`~offchain.framework.Solve`: a model, a method, the
arguments), an executor runs the batch of one iteration and hands each result back. The Dask
executor keeps every model resident on a worker (scattered once, each worker solving its share
in one task: a task costs about 4 ms of overhead against 10-ms solves), so the arguments are the
only thing that travels; a solve is a pure function of its arguments, so the trajectory is the
same as in series.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..framework import Solve


class SerialExecutor:
    """Every solve in this process, one after the other."""

    def run(self, solves: Sequence[Solve | None]) -> list[Any]:
        return [getattr(s.model, s.method)(*s.args) if s is not None else None for s in solves]

    def close(self) -> None:
        pass


def _solve_share(models, calls):
    return [getattr(m, method)(*args) for m, (method, args) in zip(models, calls)]


class DaskExecutor:
    """Solves on a Dask cluster: a local one of ``workers`` processes, or the scheduler at ``address``."""

    def __init__(self, workers: int = 2, address: str | None = None) -> None:
        import time

        from dask.distributed import Client, LocalCluster

        t0 = time.perf_counter()
        self.cluster = None
        if address is None:
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=50)
            self.client = Client(self.cluster)
        else:
            self.client = Client(address)
        self.workers = max(1, len(self.client.scheduler_info()["workers"]) or workers)
        self._models: list | None = None
        self.startup_seconds = time.perf_counter() - t0

    def _scatter(self, solves: Sequence[Solve]) -> None:
        n = len(solves)
        self.shares = [s for s in (list(range(w, n, self.workers)) for w in range(self.workers)) if s]
        self._models = [self.client.scatter([solves[i].model for i in share]) for share in self.shares]

    def run(self, solves: Sequence[Solve | None]) -> list[Any]:
        if any(s is None for s in solves):  # nothing to solve remotely this iteration
            return SerialExecutor().run(solves)
        models = [s.model for s in solves]
        if self._models is not None and (len(models) != len(self._local) or any(a is not b for a, b in zip(models, self._local))):
            self._models = None  # another round's models: send them to the workers
        if self._models is None:
            self._local = models
            self._scatter(solves)
        futures = [self.client.submit(_solve_share, models, [(solves[i].method, solves[i].args) for i in share],
                                      pure=False) for models, share in zip(self._models, self.shares)]
        out: list[Any] = [None] * len(solves)
        for share, results in zip(self.shares, self.client.gather(futures)):
            for i, r in zip(share, results):
                out[i] = r
        return out

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
