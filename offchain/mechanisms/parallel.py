"""Prosumer x-updates in parallel on a Dask local cluster.

Each worker process holds copies of the prosumers' models (scattered once). Every iteration the
prosumers draw their private proximal weights and form the x-update parameters here, the workers
solve, and each prosumer applies its result. An x-update is a pure function of its parameters
(fresh solves), so the trajectory is the same as with serial solves.
"""
from __future__ import annotations

from collections.abc import Sequence


def _solve(model, params):
    return model.x_update(*params)


class DaskAgents:
    """A runner for :func:`~offchain.mechanisms.admm.run_admm` (``parallel=DaskAgents.factory(n)``)."""

    def __init__(self, agents: Sequence, workers: int = 2):
        from dask.distributed import Client, LocalCluster

        self.agents = list(agents)
        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    dashboard_address=None, silence_logs=50)
        self.client = Client(self.cluster)
        models = [a.model for a in self.agents]
        self.models = self.client.scatter(models, broadcast=False)

    @classmethod
    def factory(cls, workers: int = 2):
        return lambda agents: cls(agents, workers)

    def x_step(self) -> list[float]:
        futures = [self.client.submit(_solve, m, a.x_params(), pure=False)
                   for m, a in zip(self.models, self.agents)]
        for a, update in zip(self.agents, self.client.gather(futures)):
            a.x_apply(update)
        return [a.last.solve_time for a in self.agents]

    def close(self) -> None:
        self.client.close()
        self.cluster.close()
