"""Scenario files: every file names its mechanism, validation names the offending field, the
shared [privacy] and [chain] tables, scaling (tariff) and cutting (storage) per seed."""
from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import pytest

from offchain import registry
from offchain.errors import ScenarioError
from offchain.mechanisms.storage import scenario as storage_scenario
from offchain.mechanisms.tariff import scenario as tariff_scenario
from offchain.models import scenario as kit

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "community10.toml"
STORAGE = ROOT / "scenarios" / "storage10.toml"


def load_scenario(path=SCENARIO, **kw):
    """The scenario of a file, through the registry (which checks the file's ``mechanism``)."""
    return registry.load_scenario(path, **kw)[1]


def parse_scenario(data: dict, **kw):
    return tariff_scenario.parse(data, "test", **kw)


def _read(path: Path) -> dict:
    with path.open("rb") as fh:
        return tomllib.load(fh)


@pytest.fixture(scope="module")
def raw() -> dict:
    return _read(SCENARIO)


@pytest.fixture(scope="module")
def storage_raw() -> dict:
    return _read(STORAGE)


def _with(raw: dict, edit) -> dict:
    data = copy.deepcopy(raw)
    edit(data)
    return data


def _write(tmp_path: Path, text: str, name: str = "scenario.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- the mechanism key ------------------------------------------------------------------------
def test_each_shipped_scenario_names_the_mechanism_that_parses_it():
    mech, sc = registry.load_scenario(SCENARIO)
    assert mech is registry.get("tariff") and mech.name == "tariff"
    assert isinstance(sc, tariff_scenario.Scenario) and sc.mechanism == "tariff"
    mech, sc = registry.load_scenario(STORAGE)
    assert mech is registry.get("storage-p2p")
    assert isinstance(sc, storage_scenario.StorageScenario) and sc.mechanism == "storage-p2p"
    assert str(STORAGE) == sc.source


def test_a_file_without_a_mechanism_is_refused_naming_the_key(tmp_path):
    text = SCENARIO.read_text().replace('mechanism = "tariff"', "", 1)
    assert "mechanism =" not in text
    with pytest.raises(ScenarioError, match=r"^mechanism: missing .*storage-p2p, tariff"):
        registry.load_scenario(_write(tmp_path, text))


def test_an_unknown_mechanism_is_named_in_the_error_with_the_known_ones(tmp_path):
    text = SCENARIO.read_text().replace('mechanism = "tariff"', 'mechanism = "auction"', 1)
    with pytest.raises(ScenarioError) as e:
        registry.load_scenario(_write(tmp_path, text))
    msg = str(e.value)
    assert msg.startswith("mechanism: ") and "'auction'" in msg and "storage-p2p, tariff" in msg


def test_the_old_mechanism_table_is_refused_as_a_non_string_mechanism(tmp_path):
    """The tariff's old ``[mechanism]`` table is now ``[iteration]``: a file of the old layout
    fails on ``mechanism``, not somewhere deep in the parser."""
    text = SCENARIO.read_text().replace('mechanism = "tariff"', "", 1).replace("[iteration]", "[mechanism]", 1)
    with pytest.raises(ScenarioError, match=r"^mechanism: must be a string, got dict"):
        registry.load_scenario(_write(tmp_path, text))


def test_a_file_of_one_mechanism_named_as_the_other_fails_on_the_others_tables(tmp_path):
    text = STORAGE.read_text().replace('mechanism = "storage-p2p"', 'mechanism = "tariff"', 1)
    with pytest.raises(ScenarioError, match=r"^(admm|network|profiles|storage): unknown key"):
        registry.load_scenario(_write(tmp_path, text))


# ---- the tariff scenario ----------------------------------------------------------------------
def test_community10_loads_ten_prosumers_with_wind_pv_batteries_and_several_load_shapes():
    sc = load_scenario()
    assert len(sc.prosumers) == 10
    assert any(p.wind_kw > 0 for p in sc.prosumers)
    assert any(p.pv_kwp > 0 for p in sc.prosumers)
    assert 0 < sum(p.battery is not None for p in sc.prosumers) < 10
    assert {"h0", "g0"} <= {p.load_profile for p in sc.prosumers}
    m = sc.market
    assert m.retail.shape == (24,) and (m.feed_in < m.retail).all()
    assert 0 < m.cvar_alpha < 1 and 0 <= m.cvar_beta <= 1
    it = sc.iteration  # the old [mechanism] table
    assert it.method == "bfgs" and it.max_iterations == 50 and 0 <= it.initial_position <= 1


def test_the_tariff_parser_takes_the_document_and_equals_the_registry_load(raw):
    assert parse_scenario(raw).to_dict() == {**load_scenario().to_dict(), "source": "test"}


@pytest.mark.parametrize("path", [SCENARIO, STORAGE], ids=["community10", "storage10"])
def test_every_option_line_in_the_file_is_commented(path):
    """Each `key = value` line carries a comment, or sits under the documented prosumer block."""
    in_prosumers = False
    for line in path.read_text().splitlines():
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
    ("iteration", "momentum", r"^iteration\.momentum: unknown key"),
    ("prosumer", "heat_pump", r"^prosumer\[2\]\.heat_pump: unknown key"),
    ("battery", "chemistry", r"^prosumer\[0\]\.battery\.chemistry: unknown key"),
])
def test_unknown_keys_are_rejected_with_their_path(raw, where, key, expected):
    def edit(d):
        target = {"top": d, "risk": d["risk"], "iteration": d["iteration"], "prosumer": d["prosumer"][2],
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
        (lambda d: d["iteration"].update(max_iterations=0), r"^iteration\.max_iterations: must be in \[1, 100000\], got 0"),
        (lambda d: d["iteration"].update(method="newton"), r"^iteration\.method: must be one of bfgs, secant"),
        (lambda d: d["iteration"].update(step=100.0), r"^iteration\.step: must be in \[step_min, step_max\]"),
    ]
    for edit, pattern in cases:
        with pytest.raises(ScenarioError, match=pattern):
            parse_scenario(_with(raw, edit))


def test_a_missing_iteration_table_is_named(raw):
    data = _with(raw, lambda d: d.pop("iteration"))
    with pytest.raises(ScenarioError, match=r"^iteration: missing table"):
        parse_scenario(data)


@pytest.mark.parametrize("n", [2, 1, 0, -3])
def test_fewer_than_the_privacy_minimum_of_prosumers_is_an_error(n):
    with pytest.raises(ScenarioError, match=rf"^prosumers: must be >= 3 \(a round's privacy minimum\), got {n}"):
        load_scenario(prosumers=n)


def test_scaling_to_200_is_deterministic_per_seed_with_unique_names():
    a = load_scenario(prosumers=200)
    b = load_scenario(prosumers=200)
    c = load_scenario(prosumers=200, seed=7)
    assert len(a.prosumers) == 200
    assert a.to_dict() == b.to_dict()
    assert len({p.name for p in a.prosumers}) == 200
    assert [p.index for p in a.prosumers] == list(range(200))
    base = load_scenario()
    assert a.prosumers[:10] == base.prosumers  # first cycle is the file itself
    sizes = lambda s: [p.annual_demand_kwh for p in s.prosumers[10:]]  # noqa: E731
    assert sizes(a) != sizes(c) and c.seed == 7
    assert all(0.7 * a.prosumers[i % 10].annual_demand_kwh <= p.annual_demand_kwh
               <= 1.3 * a.prosumers[i % 10].annual_demand_kwh for i, p in enumerate(a.prosumers))
    assert len(load_scenario(prosumers=3).prosumers) == 3


def test_to_dict_is_json_serialisable():
    d = load_scenario(prosumers=12).to_dict()
    back = json.loads(json.dumps(d))
    assert back["n_prosumers"] == 12 and len(back["tariff"]["retail"]) == 24
    assert back["prosumers"][0]["battery"]["efficiency"] == 0.95
    assert back["mechanism"] == "tariff" and back["iteration"]["max_iterations"] == 50
    assert back["privacy"] == {"key_bits": 2048, "verify_openings": True}
    assert back["chain"]["url"] == "anvil" and back["chain"]["submission_blocks"] is None  # sized to the round


def test_missing_file_and_bad_toml_raise_scenario_error(tmp_path):
    with pytest.raises(ScenarioError, match="not found"):
        registry.load_scenario(tmp_path / "nope.toml")
    with pytest.raises(ScenarioError, match="is a folder"):
        registry.load_scenario(tmp_path)
    bad = _write(tmp_path, "name = \n", "bad.toml")
    with pytest.raises(ScenarioError, match="invalid TOML"):
        registry.load_scenario(bad)


# ---- the shared [privacy] and [chain] tables ------------------------------------------------------
def test_privacy_and_chain_tables_are_optional_with_the_documented_defaults(raw, storage_raw):
    for parse, doc in ((tariff_scenario.parse, raw), (storage_scenario.parse, storage_raw)):
        bare = _with(doc, lambda d: (d.pop("privacy"), d.pop("chain")))
        sc = parse(bare)
        assert sc.privacy == kit.PrivacySpec(key_bits=2048, verify_openings=True)
        assert sc.chain == kit.ChainSpec(url="anvil")


def test_privacy_and_chain_tables_are_read_by_both_mechanisms(raw, storage_raw):
    def edit(d):
        d["privacy"].update(key_bits=1536, verify_openings=False)
        d["chain"]["url"] = "http://127.0.0.1:8545"
    for parse, doc in ((tariff_scenario.parse, raw), (storage_scenario.parse, storage_raw)):
        sc = parse(_with(doc, edit))
        assert (sc.privacy.key_bits, sc.privacy.verify_openings) == (1536, False)
        assert sc.chain.url == "http://127.0.0.1:8545"
    assert tariff_scenario.parse(_with(raw, lambda d: d["chain"].update(url="https://rpc.example.org"))) \
        .chain.url == "https://rpc.example.org"


@pytest.mark.parametrize("bits,expected", [
    (2047, r"^privacy\.key_bits: must be even .*got 2047"),
    (511, r"^privacy\.key_bits: must be in \[512, 8192\], got 511"),
    (256, r"^privacy\.key_bits: must be in \[512, 8192\], got 256"),
    (8194, r"^privacy\.key_bits: must be in \[512, 8192\], got 8194"),
    ("2048", r"^privacy\.key_bits: must be an integer, got str"),
    (True, r"^privacy\.key_bits: must be an integer, got bool"),
])
def test_bad_key_sizes_are_named(raw, storage_raw, bits, expected):
    for parse, doc in ((tariff_scenario.parse, raw), (storage_scenario.parse, storage_raw)):
        with pytest.raises(ScenarioError, match=expected):
            parse(_with(doc, lambda d: d["privacy"].update(key_bits=bits)))


def test_key_size_bounds_are_inclusive_and_checked_alone():
    assert kit.check_key_bits(512) == 512 and kit.check_key_bits(8192) == 8192
    with pytest.raises(ScenarioError, match=r"^--key-bits: must be even"):
        kit.check_key_bits(1025, "--key-bits")


def test_other_privacy_and_chain_fields_are_checked(raw):
    cases = [
        (lambda d: d["privacy"].update(verify_openings="yes"), r"^privacy\.verify_openings: must be true or false"),
        (lambda d: d["privacy"].update(curve="x25519"), r"^privacy\.curve: unknown key"),
        (lambda d: d["chain"].update(url="ftp://node"), r"^chain\.url: must be \"anvil\", \"embedded\" or an http\(s\)://"),
        (lambda d: d["chain"].update(url="127.0.0.1:8545"), r"^chain\.url: must be"),
        (lambda d: d["chain"].update(url=""), r"^chain\.url: must not be empty"),
        (lambda d: d["chain"].update(url=8545), r"^chain\.url: must be a string, got int"),
        (lambda d: d["chain"].update(account=0), r"^chain\.account: unknown key"),
        (lambda d: d.update(privacy=2048), r"^privacy: must be a table, got int"),
        (lambda d: d.update(chain="embedded"), r"^chain: must be a table, got str"),
    ]
    for edit, pattern in cases:
        with pytest.raises(ScenarioError, match=pattern):
            parse_scenario(_with(raw, edit))


# ---- the storage scenario: the prosumers cut ---------------------------------------------------------
def test_storage_prosumers_keeps_the_first_n_with_their_indices(storage_raw):
    full = storage_scenario.parse(storage_raw)
    cut = load_scenario(STORAGE, prosumers=3)
    assert [p.name for p in cut.prosumers] == [p.name for p in full.prosumers[:3]]
    assert [p.index for p in cut.prosumers] == [0, 1, 2]  # unchanged: same profiles as in the full market
    assert cut.prosumers == full.prosumers[:3] and cut.storage == full.storage
    assert len(storage_scenario.parse(storage_raw, prosumers=10).prosumers) == 10
    assert len(storage_scenario.parse(storage_raw, prosumers=1).prosumers) == 1  # one prosumer is a market


@pytest.mark.parametrize("n", [0, 11, -1, 2.0, True])
def test_storage_prosumers_outside_the_file_is_an_error(storage_raw, n):
    with pytest.raises(ScenarioError, match=r"^prosumers: must be in \[1, 10\]"):
        storage_scenario.parse(storage_raw, prosumers=n)


def test_storage_seed_override_and_json_round_trip(storage_raw):
    sc = storage_scenario.parse(storage_raw, seed=5)
    assert sc.seed == 5 and storage_scenario.parse(storage_raw).seed == storage_raw["seed"]
    back = json.loads(json.dumps(sc.to_dict()))
    assert back["n_prosumers"] == 10 and back["mechanism"] == "storage-p2p" and len(back["tariff"]["retail"]) == 24


def test_a_mechanism_with_the_documented_parse_signature_loads_its_scenario(tmp_path, monkeypatch):
    from offchain.framework import Mechanism

    class Echo(Mechanism):
        name = "echo"

        def parse(self, data: dict, source: str = "", prosumers=None, seed=None):  # Mechanism.parse's signature
            return {**data, "prosumers": prosumers}

        def prepare(self, scenario, options): ...

        def summarise(self, job, outcomes, plain, reference): ...

        def audit_rules(self, published, params, participants): ...

    monkeypatch.setitem(registry.MECHANISMS, "echo", "tests.unused")
    monkeypatch.setitem(registry._loaded, "echo", Echo())
    mech, sc = registry.load_scenario(_write(tmp_path, 'mechanism = "echo"\nname = "x"\n'), prosumers=3)
    assert mech.name == "echo" and sc["name"] == "x" and sc["prosumers"] == 3
