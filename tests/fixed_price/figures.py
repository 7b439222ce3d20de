"""Report figure of the fixed-price mechanism."""
from __future__ import annotations

import matplotlib.pyplot as plt


def figures(record: dict) -> dict:
    fig, ax = plt.subplots(figsize=(6, 3))
    for name, net in record["details"]["net_kwh"].items():
        ax.plot(net, label=name)
    ax.set(xlabel="period", ylabel="kWh", title="Net energy per prosumer")
    ax.legend(fontsize=7)
    return {"Net energy per prosumer": fig}
