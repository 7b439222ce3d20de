"""Scenario files: validation names the offending field; scaling is deterministic per seed."""
from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import pytest

from offchain.models.scenario import ScenarioError, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "community10.toml"


@pytest.fixture(scope="module")
def raw() -> dict:
    with SCENARIO.open("rb") as fh:
        return tomllib.load(fh)


def _with(raw: dict, edit) -> dict:
    data = copy.deepcopy(raw)
    edit(data)
    return data


def test_community10_loads_ten_prosumers_with_wind_pv_batteries_and_several_load_shapes():
    sc = load_scenario(SCENARIO)
    assert len(sc.prosumers) == 10
    assert any(p.wind_kw > 0 for p in sc.prosumers)
    assert any(p.pv_kwp > 0 for p in sc.prosumers)
    assert 0 < sum(p.battery is not None for p in sc.prosumers) < 10
    assert {"h0", "g0"} <= {p.load_profile for p in sc.prosumers}
    m = sc.market
    assert m.retail.shape == (24,) and (m.feed_in < m.retail).all()
    assert 0 < m.cvar_alpha < 1 and 0 <= m.cvar_beta <= 1


def test_every_option_line_in_the_file_is_commented():
    """Each `key = value` line carries a comment, or sits under the documented prosumer block."""
    in_prosumers = False
    for line in SCENARIO.read_text().splitlines():
        s = line.strip()
        if s.startswith("[[prosumer]]"):
            in_prosumers = True  # keys documented once in the block comment above the templates
        if "=" in s and not s.startswith("#") and not in_prosumers and not s.startswith(("retail", "feed_in")):
            assert "#" in s, f"option without a comment: {s}"


def test_out_of_range_battery_efficiency_names_the_field(raw):
    data = _with(raw, lambda d: d["prosumer"][3]["battery"].update(efficiency=1.5))
    with pytest.raises(ScenarioError) as e:
        parse_scenario(data)
    assert str(e.value) == "prosumer[3].battery.efficiency: must be in (0, 1], got 1.5"


def test_wrong_type_names_the_field(raw):
    data = _with(raw, lambda d: d["prosumer"][0].update(pv_kwp="six"))
    with pytest.raises(ScenarioError, match=r"^prosumer\[0\]\.pv_kwp: must be a number, got str"):
        parse_scenario(data)
    data = _with(raw, lambda d: d["uncertainty"].update(scenarios=2.5))
    with pytest.raises(ScenarioError, match=r"^uncertainty\.scenarios: must be an integer"):
        parse_scenario(data)
    data = _with(raw, lambda d: d["tariff"].update(retail=[0.5] * 23))
    with pytest.raises(ScenarioError, match=r"^tariff\.retail: must have 24 values"):
        parse_scenario(data)


@pytest.mark.parametrize("where,key,expected", [
    ("top", "colour", r"^colour: unknown key"),
    ("risk", "gamma", r"^risk\.gamma: unknown key"),
    ("prosumer", "heat_pump", r"^prosumer\[2\]\.heat_pump: unknown key"),
    ("battery", "chemistry", r"^prosumer\[0\]\.battery\.chemistry: unknown key"),
])
def test_unknown_keys_are_rejected_with_their_path(raw, where, key, expected):
    def edit(d):
        target = {"top": d, "risk": d["risk"], "prosumer": d["prosumer"][2],
                  "battery": d["prosumer"][0]["battery"]}[where]
        target[key] = 1
    with pytest.raises(ScenarioError, match=expected):
        parse_scenario(_with(raw, edit))


def test_other_range_checks_name_their_field(raw):
    cases = [
        (lambda d: d["risk"].update(cvar_alpha=1.0), r"^risk\.cvar_alpha: must be in \(0, 1\), got 1"),
        (lambda d: d["tariff"]["feed_in"].__setitem__(5, 0.9), r"^tariff\.feed_in\[5\]: must be below"),
        (lambda d: d["prosumer"][0]["battery"].update(soc_min=0.99), r"^prosumer\[0\]\.battery\.soc_max: must be >"),
        (lambda d: d["site"].update(wind_turbine="NoSuch/1"), r"^site\.wind_turbine: not in windpowerlib"),
        (lambda d: d["prosumer"][1].update(load_profile="x9"), r"^prosumer\[1\]\.load_profile: must be one of"),
        (lambda d: d["prosumer"][1].update(name="H01"), r"^prosumer\[1\]\.name: duplicate"),
        (lambda d: d["mechanism"].update(max_iterations=0), r"^mechanism\.max_iterations: must be in \[1, 100000\], got 0"),
    ]
    for edit, pattern in cases:
        with pytest.raises(ScenarioError, match=pattern):
            parse_scenario(_with(raw, edit))


@pytest.mark.parametrize("n", [1, 0, -3])
def test_fewer_than_two_prosumers_is_an_error(n):
    with pytest.raises(ScenarioError, match=rf"^prosumers: must be >= 2, got {n}"):
        load_scenario(SCENARIO, prosumers=n)


def test_scaling_to_200_is_deterministic_per_seed_with_unique_names():
    a = load_scenario(SCENARIO, prosumers=200)
    b = load_scenario(SCENARIO, prosumers=200)
    c = load_scenario(SCENARIO, prosumers=200, seed=7)
    assert len(a.prosumers) == 200
    assert a.to_dict() == b.to_dict()
    assert len({p.name for p in a.prosumers}) == 200
    assert [p.index for p in a.prosumers] == list(range(200))
    base = load_scenario(SCENARIO)
    assert a.prosumers[:10] == base.prosumers  # first cycle is the file itself
    sizes = lambda s: [p.annual_demand_kwh for p in s.prosumers[10:]]  # noqa: E731
    assert sizes(a) != sizes(c) and c.seed == 7
    assert all(0.7 * a.prosumers[i % 10].annual_demand_kwh <= p.annual_demand_kwh
               <= 1.3 * a.prosumers[i % 10].annual_demand_kwh for i, p in enumerate(a.prosumers))
    assert len(load_scenario(SCENARIO, prosumers=3).prosumers) == 3


def test_to_dict_is_json_serialisable():
    d = load_scenario(SCENARIO, prosumers=12).to_dict()
    back = json.loads(json.dumps(d))
    assert back["n_prosumers"] == 12 and len(back["tariff"]["retail"]) == 24
    assert back["prosumers"][0]["battery"]["efficiency"] == 0.95


def test_missing_file_and_bad_toml_raise_scenario_error(tmp_path):
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ScenarioError, match="invalid TOML"):
        load_scenario(bad)
