"""``gridshare refund``: deposits back from a round that cannot finish, with a key store's accounts.

What anyone may do after a deadline is done, in order: a submission attempt or a dispute past its
deadline is moved on (``advance``, dropping who is missing; the others would have to submit
again, and below the privacy minimum the round closes); a round whose coordinator is late is
cancelled (``cancel``). Then every account of the key store with a ledger balance in a settled,
closed or cancelled round withdraws it.
"""
from __future__ import annotations

from pathlib import Path

from eth_utils import is_address, to_checksum_address

from .chain.backends import ContractRevert, connect, dev_account
from .chain.market import Market
from .errors import ChainError, UsageError
from .keystore import KeyStore
from .units import tokens

SCAN = 64  # accounts of the seed looked at beyond the round's participant count


def key_folder(path: Path) -> Path:
    """A run folder, its keys/ or a deployment's .keys folder: where accounts.jsonl is."""
    for folder in (Path(path) / "keys", Path(path)):
        if (folder / "accounts.jsonl").exists():
            return folder
    raise UsageError(f"{path}: no key store there (a run folder, its keys/ folder or a deployment's .keys folder)")


def refund_command(args) -> int:
    folder = key_folder(args.keys)
    if not is_address(args.market):
        raise UsageError(f"--market: not an address: {args.market!r}")
    chain = connect(args.chain)
    address = to_checksum_address(args.market)
    if not chain.w3.eth.get_code(address):
        raise ChainError(f"no contract at {address} on {args.chain}")
    market, round_id = Market(chain, address), args.round
    try:
        info = market.round_info(round_id)
    except ContractRevert as exc:
        raise UsageError(f"--round {round_id}: {exc}") from None
    seed = KeyStore(folder).account_seed()
    accounts = [dev_account(i, seed) for i in range(info["participant_count"] + SCAN)]
    members = {a.lower() for a in [*market.participants(round_id), info["coordinator"], info["grid_account"]]}
    if not any(a.address.lower() in members for a in accounts):
        raise UsageError(f"--keys {args.keys}: none of its accounts is a member or the coordinator of round "
                         f"{round_id} of {address} (the key store of another run?)")
    mine = [a for a in accounts if market.balance(round_id, a) > 0]
    if not mine:
        print(f"round {round_id} ({info['phase']}): no account of {folder} holds a balance in it any more; "
              "nothing to refund")
        return 0
    names = party_names(folder)
    sender = mine[0]
    if info["phase"] not in ("Settled", "Closed"):
        if not _move_on(chain, market, round_id, sender):
            info = market.round_info(round_id)
            print(f"round {round_id} is still live ({info['phase']}, {info['step']}) and its coordinator on time "
                  f"until block {market.coordinator_deadline(round_id)} (now {chain.block_number}); try again after it")
            return 1
    for account in mine:
        amount = market.balance(round_id, account)
        who = names.get(account.address, account.address)
        if not amount:  # forfeited on the way (a late coordinator's bond)
            print(f"round {round_id}: {who} holds nothing any more (forfeited)")
            continue
        receipt = market.withdraw(account, round_id)
        print(f"round {round_id}: {who} withdrew {tokens(amount):,.6f} tokens "
              f"(tx {receipt['transactionHash'].to_0x_hex()})")
    return 0


def party_names(folder: Path) -> dict[str, str]:
    """Address -> party name, from the name books the run's rounds kept (empty for a deployment's keys)."""
    names: dict[str, str] = {}
    for book in sorted(Path(folder).glob("round*-names.jsonl")):
        names.update(KeyStore(folder).party(book.stem).get("addresses") or {})
    return names


def _move_on(chain, market: Market, round_id: int, sender) -> bool:
    """Advances and cancels while the deadlines allow; True once the round is closed."""
    for _ in range(8):  # attempts without the silent -> below the minimum, or the coordinator's step -> cancelled
        info = market.round_info(round_id)
        if info["phase"] in ("Settled", "Closed"):
            return True
        now = chain.block_number
        if now > market.coordinator_deadline(round_id):
            receipt = market.cancel(sender, round_id)
            print(f"round {round_id}: cancelled, its coordinator missed the deadline "
                  f"(tx {receipt['transactionHash'].to_0x_hex()})")
            continue
        step_open = info["phase"] == "Iterating" and info["step"] in ("Submitting", "Disputing")
        if not (step_open and now > int(info["deadline"])):
            return False
        missing = _missing(market, round_id, info)
        receipt = market.advance(sender, round_id, missing)
        print(f"round {round_id}: moved on past the deadline, dropping {len(missing)} silent participant(s) "
              f"(tx {receipt['transactionHash'].to_0x_hex()})")
    return market.round_info(round_id)["phase"] in ("Settled", "Closed")


def _missing(market: Market, round_id: int, info: dict) -> list[str]:
    """The active participants that did not submit in this attempt (did not open, in a dispute)."""
    from .chain.market import aggregate_key

    out = []
    for address in market.participants(round_id):
        m = market.member(round_id, address)
        if m["dropped_before_plus_one"]:
            continue
        if info["step"] == "Disputing":
            done = m["opened_plus_one"] == aggregate_key(info["iteration"], info["attempt"]) + 1
        else:
            done = m["submitted_iteration_plus_one"] == info["iteration"] + 1 and m["submitted_attempt"] == info["attempt"]
        if not done:
            out.append(address)
    return out
