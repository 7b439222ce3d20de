"""The compiler wrapper: one standard-JSON call through scripts/solc, cached artifacts."""
import pytest

from offchain.chain import compiler
from offchain.chain.compiler import CompileError, compile_contracts


def test_compiles_all_contracts_with_abi_and_bytecode():
    arts = compile_contracts()
    for name in ("PrivateRounds", "PaillierMath", "TariffRule", "StorageRule", "SettlementToken", "LibHarness"):
        assert arts[name].abi
        assert arts[name].bytecode.startswith("0x") and len(arts[name].bytecode) > 100


def test_cache_hit_skips_node(monkeypatch):
    compile_contracts()  # make sure the cache exists

    import solcx

    def boom(*a, **k):
        raise AssertionError("node/solc must not run on a cache hit")

    monkeypatch.setattr(solcx, "compile_standard", boom)
    arts = compile_contracts()
    assert "PrivateRounds" in arts


def test_syntax_error_reports_file_and_line(tmp_path, monkeypatch):
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "Broken.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\ncontract Broken {\n    uint x = ;\n}\n")
    monkeypatch.setattr(compiler, "ROOT", tmp_path)
    monkeypatch.setattr(compiler, "CONTRACTS_DIR", tmp_path / "contracts")
    monkeypatch.setattr(compiler, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setattr(compiler, "EXTRA_SOURCES", [])  # no registered mechanism's folder either
    with pytest.raises(CompileError) as err:
        compile_contracts()
    assert "contracts/Broken.sol:4:" in str(err.value)
    assert not (tmp_path / "build").exists()
