"""Prosumer x-updates in parallel on a Dask local cluster.

The prosumers' models are split among the workers once (each worker process keeps its share).
Every iteration the prosumers draw their private proximal weights and form the x-update
parameters here, each worker solves its share in one task (one task per worker keeps the
scheduler's per-task overhead off the 10-ms solves), and each prosumer applies its result. An
x-update is a pure function of its parameters (fresh solves), so the trajectory is the same as
with serial solves.
"""
from __future__ import annotations

from collections.abc import Sequence


def _solve_share(models, params):
    return [m.x_update(*p) for m, p in zip(models, params)]


class DaskAgents:
    """A runner for :func:`~offchain.mechanisms.admm.run_admm` (``parallel=DaskAgents.factory(n)``)."""

    def __init__(self, agents: Sequence, workers: int = 2):
        import time

        from dask.distributed import Client, LocalCluster

        t0 = time.perf_counter()
        self.agents = list(agents)
        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    dashboard_address=None, silence_logs=50)
        self.client = Client(self.cluster)
        self.shares = [list(range(w, len(self.agents), workers)) for w in range(workers)]
        self.shares = [s for s in self.shares if s]
        self.models = [self.client.scatter([self.agents[i].model for i in s]) for s in self.shares]
        self.startup_seconds = time.perf_counter() - t0  # cluster start and model transfer

    @classmethod
    def factory(cls, workers: int = 2):
        return lambda agents: cls(agents, workers)

    def x_step(self) -> list[float]:
        futures = [self.client.submit(_solve_share, m, [self.agents[i].x_params() for i in s], pure=False)
                   for m, s in zip(self.models, self.shares)]
        for s, updates in zip(self.shares, self.client.gather(futures)):
            for i, update in zip(s, updates):
                self.agents[i].x_apply(update)
        return [a.last.solve_time for a in self.agents]

    def close(self) -> None:
        self.client.close()
        self.cluster.close()
