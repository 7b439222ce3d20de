"""Chain backends: connection errors and the embedded chain's dev accounts."""
import socket

import pytest

from offchain.chain.backends import ChainError, ContractRevert, connect


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_url_raises_chain_error():
    with pytest.raises(ChainError) as err:
        connect(f"http://127.0.0.1:{_free_port()}")
    assert "cannot reach" in str(err.value)
    assert "\n" not in str(err.value)


def test_non_ethereum_server_raises_chain_error():
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ChainError) as err:
            connect(f"http://127.0.0.1:{srv.server_address[1]}")
        assert "not an Ethereum JSON-RPC node" in str(err.value)
    finally:
        srv.shutdown()


def test_unsupported_scheme_raises_chain_error():
    with pytest.raises(ChainError):
        connect("ftp://example.invalid")


@pytest.fixture(scope="module")
def chain():
    return connect()


def test_embedded_has_many_funded_deterministic_accounts(chain):
    assert chain.kind == "embedded"
    accts = chain.accounts(64)
    assert len({a.address for a in accts}) == 64
    assert all(chain.w3.eth.get_balance(a.address) > 10**18 for a in accts)
    assert [a.address for a in chain.accounts(3, offset=5)] == [a.address for a in accts[5:8]]
    assert chain.block_gas_limit >= 60_000_000


def test_accounts_beyond_genesis_are_funded(chain):
    accts = chain.accounts(3, offset=300)
    assert all(chain.w3.eth.get_balance(a.address) > 10**18 for a in accts)


def test_revert_is_decoded_and_changes_nothing(chain):
    op, other = chain.accounts(2)
    token = chain.deploy("SettlementToken", op.address, sender=op)
    chain.transact(token.functions.mint(op.address, 5), op)
    with pytest.raises(ContractRevert) as err:
        chain.transact(token.functions.mint(other.address, 5), other)
    assert err.value.name == "OwnableUnauthorizedAccount"
    assert str(err.value) == f"OwnableUnauthorizedAccount(account={other.address})"
    assert token.functions.totalSupply().call() == 5
    # the nonce bookkeeping survives the failure
    chain.transact(token.functions.mint(other.address, 7), op)
    assert token.functions.balanceOf(other.address).call() == 7


def test_transact_many_returns_receipts_in_order(chain):
    op, *rest = chain.accounts(6)
    token = chain.deploy("SettlementToken", op.address, sender=op)
    receipts = chain.transact_many([(token.functions.mint(a.address, i + 1), op) for i, a in enumerate(rest)])
    assert [r["status"] for r in receipts] == [1] * 5
    assert [token.functions.balanceOf(a.address).call() for a in rest] == [1, 2, 3, 4, 5]
