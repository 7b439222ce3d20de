"""Models: the scenario reader kit, profiles from the field's libraries, and the prosumer models
(the CVaR prosumer of the tariff mechanism, the storage + P2P prosumer) as cvxpy building blocks."""
