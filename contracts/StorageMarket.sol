// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {PrivateRounds} from "./PrivateRounds.sol";

/// @title StorageMarket
/// @notice Shared-storage renting with peer-to-peer trading (paper A) on top of the generic private
///         rounds. The coordinator is the storage operator: its Paillier key decrypts the aggregate
///         (C^E, C^P, throughput, net grid per period) that the two-block ADMM iterates on; the
///         public price vector is the pair of capacity rents (energy, power). Pair messages carry the
///         pad-encrypted P2P coordination between prosumers. Settlement books rents and usage fees to
///         the operator, transmission fees to the P2P centre, grid energy against the grid account and
///         the P2P trades between the prosumers.
/// @dev Units: energy int64 of 1e-6 kWh (power 1e-6 kW), prices uint64 of 1e-6 token per kWh (per kW
///      for the power rent), token amounts in 18-decimal base units, amount = price * quantity * 1e6.
///      Positive amounts are credits. Reveal layout per participant (registration order), T periods:
///      [C^E, C^P, throughput, net grid[0..T-1]] then, if the round has pair lanes, for every other
///      participant q in registration order: trade[T] (sale from me to q; negative = purchase) and
///      priceHalf[T] (my half of the pair price, 1e-6 token per kWh).
contract StorageMarket is PrivateRounds {
    /// @notice Token base units per (1e-6 token/kWh x 1e-6 kWh).
    int256 public constant UNIT = 1e6;
    /// @dev Values in front of the per-period net grid: C^E, C^P, throughput.
    uint256 internal constant HEAD = 3;
    /// @dev Bill items per participant, in `Bill` order (positive = credit to the participant).
    uint256 internal constant RENT = 0;
    uint256 internal constant USAGE = 1;
    uint256 internal constant TRANSMISSION = 2;
    uint256 internal constant GRID = 3;
    uint256 internal constant P2P = 4;
    uint256 internal constant ITEMS = 5;

    /// @notice The terms of a storage round (`RoundParams.terms = abi.encode(Terms)`).
    struct Terms {
        address operator; // receives capacity rents and usage fees (must be the coordinator)
        address centre; // P2P centre: receives transmission fees
        address[] members; // prosumers allowed to register; member index = position here
        uint64 energyCap; // shared store energy capacity, 1e-6 kWh
        uint64 powerCap; // power capacity, 1e-6 kW
        uint64 capacitySlack; // tolerance on the sums of revealed capacities, 1e-6
        uint64 usagePrice; // 1e-6 token per kWh of shared-storage throughput (to the operator)
        uint64[] storageFee; // per member: transmission fee to/from the store, 1e-6 token/kWh (to the centre)
        uint64[] pairFee; // members^2, row-major [buyer * M + seller]: fee paid by the buyer (to the centre)
        uint64[] gridBuy; // per period: retail price (the prosumer buys from the grid account)
        uint64[] gridSell; // per period: feed-in price
    }


    /// @dev Head fields of abi.encode(Terms) (word 0 is the tuple offset 0x20; field k is word 1 + k).
    uint256 internal constant F_OPERATOR = 0;
    uint256 internal constant F_CENTRE = 1;
    uint256 internal constant F_MEMBERS = 2;
    uint256 internal constant F_ENERGY_CAP = 3;
    uint256 internal constant F_POWER_CAP = 4;
    uint256 internal constant F_SLACK = 5;
    uint256 internal constant F_USAGE_PRICE = 6;
    uint256 internal constant F_STORAGE_FEE = 7;
    uint256 internal constant F_PAIR_FEE = 8;
    uint256 internal constant F_GRID_BUY = 9;
    uint256 internal constant F_GRID_SELL = 10;
    uint256 internal constant FIELDS = 11;
    /// @dev Largest `terms` (kept as the code of a data contract, below the 24576-byte code limit).
    uint256 internal constant MAX_TERMS_BYTES = 24_000;

    /// @dev Per round: the data contract whose code is 0x00 || abi.encode(Terms) (SSTORE2), validated
    ///      once in `_configure` and read in place (no decoder) at settlement.
    mapping(uint256 => address) internal _termsData;
    mapping(uint256 => mapping(address => uint256)) internal _memberIndexPlusOne;

    /// @notice One participant's settled bill by item (token base units, positive = credit).
    event Bill(
        uint256 indexed roundId,
        address indexed participant,
        int256 rent,
        int256 usage,
        int256 transmission,
        int256 grid,
        int256 p2p
    );

    error NotMember(address account);
    error NegativeQuantity(address participant, uint256 index);
    error CapacityExceeded(uint256 which, int256 total, uint256 limit);
    error TradeMismatch(address a, address b, uint256 period);

    /// @param token_ the ERC-20 settlement token.
    constructor(IERC20 token_) PrivateRounds(token_) {}

    // ------------------------------------------------------------------ views

    /// @notice The terms a round was created with.
    /// @param roundId the round.
    /// @return data abi.encode(Terms) exactly as given to `createRound`.
    function terms(uint256 roundId) external view returns (bytes memory data) {
        _round(roundId);
        return _loadTerms(roundId);
    }

    /// @notice The member index of an account in a round's terms.
    /// @param roundId the round.
    /// @param account the account.
    /// @return indexPlusOne its position in `Terms.members` plus one (0: not a member).
    function memberIndex(uint256 roundId, address account) external view returns (uint256 indexPlusOne) {
        _round(roundId);
        return _memberIndexPlusOne[roundId][account];
    }

    // ------------------------------------------------------------------ mechanism hooks

    /// @dev Validates the terms (a well-formed abi.encode(Terms), every address and uint64 in range):
    ///      T = gridBuy.length = gridSell.length >= 1, periods = 3 + T, pairLanes in {0, T}, two rents
    ///      (price band length 2), at least two distinct members with one storage fee each and
    ///      members^2 pair fees, gridSell <= gridBuy, operator = coordinator, centre non-zero.
    function _configure(uint256 roundId, RoundParams calldata p) internal override {
        bytes memory t = p.terms;
        _checkEncoding(t);
        (uint256 buy, uint256 T) = _array(t, F_GRID_BUY);
        (uint256 sell, uint256 T2) = _array(t, F_GRID_SELL);
        if (T == 0 || T2 != T) revert BadParameters("grid prices length");
        if (p.periods != HEAD + T) revert BadParameters("periods");
        if (p.pairLanes != 0 && p.pairLanes != T) revert BadParameters("pair lanes");
        if (p.priceFloor.length != 2) revert BadParameters("price band length");
        (uint256 members, uint256 M) = _array(t, F_MEMBERS);
        if (M < 2) revert BadParameters("members");
        (, uint256 len) = _array(t, F_STORAGE_FEE);
        if (len != M) revert BadParameters("storage fee length");
        (, len) = _array(t, F_PAIR_FEE);
        if (len != M * M) revert BadParameters("pair fee length");
        for (uint256 i = 0; i < T; ++i) {
            if (_at(t, sell, i) > _at(t, buy, i)) revert BadParameters("grid sell above buy");
        }
        if (address(uint160(_head(t, F_OPERATOR))) != msg.sender) revert BadParameters("operator");
        if (_head(t, F_CENTRE) == 0) revert BadParameters("centre");
        mapping(address => uint256) storage index = _memberIndexPlusOne[roundId];
        for (uint256 i = 0; i < M; ++i) {
            address a = address(uint160(_at(t, members, i)));
            if (index[a] != 0) revert BadParameters("duplicate member");
            index[a] = i + 1;
        }
        _termsData[roundId] = _storeKey(t, "");
    }

    /// @dev Only the members of the terms may register.
    function _beforeRegister(uint256 roundId, address account) internal view override {
        if (_memberIndexPlusOne[roundId][account] == 0) revert NotMember(account);
    }

    /// @dev 3 + T, plus 2 T per other participant if the round has pair lanes.
    function _revealLength(uint256 roundId) internal view override returns (uint256 len) {
        Round storage r = _rounds[roundId];
        len = r.periods;
        uint256 count = r.participantCount;
        if (r.pairLanes != 0 && count > 1) len += 2 * (len - HEAD) * (count - 1);
    }

    /// @dev payees = [operator, centre, gridAccount].
    function _settlementAmounts(uint256 roundId, int64[][] memory values)
        internal
        view
        override
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts)
    {
        (amounts, payees, payeeAmounts,) = _compute(roundId, values);
    }

    /// @dev As `_settlementAmounts`, and emits one `Bill` per participant.
    function _settle(uint256 roundId, int64[][] memory values)
        internal
        override
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts)
    {
        int256[] memory bill;
        (amounts, payees, payeeAmounts, bill) = _compute(roundId, values);
        address[] storage parts = _rounds[roundId].participants;
        for (uint256 i = 0; i < amounts.length; ++i) {
            uint256 o = ITEMS * i;
            emit Bill(
                roundId,
                parts[i],
                _get(bill, o + RENT),
                _get(bill, o + USAGE),
                _get(bill, o + TRANSMISSION),
                _get(bill, o + GRID),
                _get(bill, o + P2P)
            );
        }
    }

    // ------------------------------------------------------------------ terms encoding

    function _loadTerms(uint256 roundId) internal view returns (bytes memory data) {
        address at = _termsData[roundId];
        uint256 len = at.code.length - 1;
        data = new bytes(len);
        assembly ("memory-safe") {
            extcodecopy(at, add(data, 32), 1, len)
        }
    }

    /// @dev Word at byte offset `at` of `data` (unchecked: offsets were validated).
    function _word(bytes memory data, uint256 at) internal pure returns (uint256 w) {
        assembly ("memory-safe") {
            w := mload(add(add(data, 32), at))
        }
    }

    /// @dev Head field `field` of abi.encode(Terms).
    function _head(bytes memory data, uint256 field) internal pure returns (uint256) {
        return _word(data, 32 + 32 * field);
    }

    /// @dev Array field `field`: byte offset of its first element and its length.
    function _array(bytes memory data, uint256 field) internal pure returns (uint256 first, uint256 len) {
        first = 32 + _head(data, field);
        len = _word(data, first);
        first += 32;
    }

    /// @dev Element `j` of the array whose first element is at byte offset `first`.
    function _at(bytes memory data, uint256 first, uint256 j) internal pure returns (uint256) {
        return _word(data, first + 32 * j);
    }

    /// @dev `data` is a strict abi.encode(Terms): tuple offset 0x20, the head inside, every array
    ///      inside the data, addresses below 2^160 and every uint64 below 2^64.
    function _checkEncoding(bytes memory data) internal pure {
        uint256 L = data.length;
        _requireEncoding(L >= 32 * (1 + FIELDS) && L <= MAX_TERMS_BYTES && _word(data, 0) == 32);
        for (uint256 f = 0; f < FIELDS; ++f) {
            uint256 w = _head(data, f);
            uint256 bits = f <= F_MEMBERS ? 160 : 64;
            if (f != F_MEMBERS && f < F_STORAGE_FEE) {
                _requireEncoding(w >> bits == 0);
                continue;
            }
            // an offset from the tuple start (byte 32); length word and elements inside the data
            _requireEncoding(w >= 32 * FIELDS && w <= L && w + 64 <= L);
            (uint256 first, uint256 len) = _array(data, f);
            _requireEncoding(len <= (L - first) / 32);
            for (uint256 j = 0; j < len; ++j) {
                _requireEncoding(_at(data, first, j) >> bits == 0);
            }
        }
    }

    function _requireEncoding(bool ok) internal pure {
        if (!ok) revert BadParameters("terms encoding");
    }

    // ------------------------------------------------------------------ settlement

    /// @dev The settlement with each participant's bill items: `bill[ITEMS * i + item]`. Reveal
    ///      lengths were checked (settle, quote) and terms validated (`_configure`), so values, bill
    ///      and terms are read without bounds checks; int64 quantities times uint64 prices times 1e6
    ///      stay far inside int256 (unchecked arithmetic).
    function _compute(uint256 roundId, int64[][] memory values)
        internal
        view
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts, int256[] memory bill)
    {
        Round storage r = _rounds[roundId];
        bytes memory tm = _loadTerms(roundId);
        address[] memory parts = r.participants;
        uint256 count = values.length;
        uint256 T = uint256(r.periods) - HEAD;
        uint256[] memory idx = new uint256[](count);
        for (uint256 i = 0; i < count; ++i) {
            idx[i] = _memberIndexPlusOne[roundId][parts[i]] - 1;
        }
        _checkQuantities(tm, parts, values);
        bill = new int256[](ITEMS * count);
        _storageAndGrid(r.tariff, tm, values, idx, T, bill);
        if (r.pairLanes != 0) _pairs(tm, parts, values, idx, T, bill);

        amounts = new int256[](count);
        payeeAmounts = new int256[](3);
        for (uint256 i = 0; i < count; ++i) {
            uint256 o = ITEMS * i;
            int256 toOperator = _get(bill, o + RENT) + _get(bill, o + USAGE);
            int256 toCentre = _get(bill, o + TRANSMISSION);
            int256 toGrid = _get(bill, o + GRID);
            _add(amounts, i, toOperator + toCentre + toGrid + _get(bill, o + P2P));
            _add(payeeAmounts, 0, -toOperator);
            _add(payeeAmounts, 1, -toCentre);
            _add(payeeAmounts, 2, -toGrid);
        }
        payees = new address[](3);
        payees[0] = address(uint160(_head(tm, F_OPERATOR)));
        payees[1] = address(uint160(_head(tm, F_CENTRE)));
        payees[2] = r.gridAccount;
    }

    /// @dev C^E, C^P, throughput >= 0; the capacity sums within the store's capacity plus slack.
    function _checkQuantities(bytes memory tm, address[] memory parts, int64[][] memory values) internal pure {
        int256 energy;
        int256 power;
        unchecked {
            for (uint256 i = 0; i < values.length; ++i) {
                int64[] memory v = values[i];
                for (uint256 j = 0; j < HEAD; ++j) {
                    if (_v(v, j) < 0) revert NegativeQuantity(parts[i], j);
                }
                energy += _v(v, 0);
                power += _v(v, 1);
            }
            uint256 slack = _head(tm, F_SLACK);
            uint256 limit = _head(tm, F_ENERGY_CAP) + slack;
            if (energy > int256(limit)) revert CapacityExceeded(0, energy, limit);
            limit = _head(tm, F_POWER_CAP) + slack;
            if (power > int256(limit)) revert CapacityExceeded(1, power, limit);
        }
    }

    /// @dev Rents and usage (to the operator), storage transmission (to the centre), grid energy.
    function _storageAndGrid(
        uint64[] storage rents,
        bytes memory tm,
        int64[][] memory values,
        uint256[] memory idx,
        uint256 T,
        int256[] memory bill
    ) internal view {
        int256 rentE = int256(uint256(rents[0]));
        int256 rentP = int256(uint256(rents[1]));
        (uint256 fees,) = _array(tm, F_STORAGE_FEE);
        unchecked {
            for (uint256 i = 0; i < values.length; ++i) {
                int64[] memory v = values[i];
                _add(bill, ITEMS * i + RENT, -(rentE * _v(v, 0) + rentP * _v(v, 1)) * UNIT);
                _add(bill, ITEMS * i + USAGE, -int256(_head(tm, F_USAGE_PRICE)) * _v(v, 2) * UNIT);
                _add(bill, ITEMS * i + TRANSMISSION, -int256(_at(tm, fees, idx[i])) * _v(v, 2) * UNIT);
                _add(bill, ITEMS * i + GRID, _grid(tm, v, T) * UNIT);
            }
        }
    }

    /// @dev sum_t of -gridBuy[t] * net_t (import) or -gridSell[t] * net_t (export), before UNIT.
    function _grid(bytes memory tm, int64[] memory v, uint256 T) internal pure returns (int256 g) {
        (uint256 buy,) = _array(tm, F_GRID_BUY);
        (uint256 sell,) = _array(tm, F_GRID_SELL);
        unchecked {
            for (uint256 t = 0; t < T; ++t) {
                int256 net = _v(v, HEAD + t);
                g -= int256(_at(tm, net > 0 ? buy : sell, t)) * net;
            }
        }
    }

    /// @dev Every pair a < c (registration order): a's trade block for c must be minus c's block for
    ///      a in every period; c pays a sum_t (halfA_t + halfC_t) * trade_t; each buyer pays the
    ///      centre its transmission fee pairFee[buyer * M + seller] per kWh bought.
    function _pairs(
        bytes memory tm,
        address[] memory parts,
        int64[][] memory values,
        uint256[] memory idx,
        uint256 T,
        int256[] memory bill
    ) internal pure {
        unchecked {
            for (uint256 a = 0; a < values.length; ++a) {
                for (uint256 c = a + 1; c < values.length; ++c) {
                    uint256 bad = _settlePair(tm, values, idx, T, bill, a, c);
                    if (bad != type(uint256).max) revert TradeMismatch(parts[a], parts[c], bad);
                }
            }
        }
    }

    /// @dev Books pair (a, c) into `bill`; returns the first mismatching period (type(uint256).max: none).
    function _settlePair(
        bytes memory tm,
        int64[][] memory values,
        uint256[] memory idx,
        uint256 T,
        int256[] memory bill,
        uint256 a,
        uint256 c
    ) internal pure returns (uint256 bad) {
        unchecked {
            // a's block for c is its (c-1)-th (c comes after a), c's block for a its a-th
            int256 pay;
            int256 boughtA;
            int256 boughtC;
            (pay, boughtA, boughtC, bad) =
                _pair(values[a], values[c], HEAD + T + (c - 1) * 2 * T, HEAD + T + a * 2 * T, T);
            if (bad != type(uint256).max) return bad;
            _add(bill, ITEMS * a + P2P, pay * UNIT);
            _add(bill, ITEMS * c + P2P, -pay * UNIT);
            boughtA *= _pairFee(tm, idx[a], idx[c]) * UNIT;
            boughtC *= _pairFee(tm, idx[c], idx[a]) * UNIT;
            _add(bill, ITEMS * a + TRANSMISSION, -boughtA);
            _add(bill, ITEMS * c + TRANSMISSION, -boughtC);
        }
    }

    /// @dev One pair's trade blocks at offsets oa (in va) and oc (in vc): the payment from c to a
    ///      (price x energy, before UNIT), the energy each bought and the first mismatching period
    ///      (type(uint256).max: none).
    function _pair(int64[] memory va, int64[] memory vc, uint256 oa, uint256 oc, uint256 T)
        internal
        pure
        returns (int256 pay, int256 boughtA, int256 boughtC, uint256 bad)
    {
        unchecked {
            for (uint256 t = 0; t < T; ++t) {
                int256 q = _v(va, oa + t);
                if (q != -_v(vc, oc + t)) return (0, 0, 0, t);
                pay += (_v(va, oa + T + t) + _v(vc, oc + T + t)) * q;
                if (q < 0) boughtA -= q;
                else boughtC += q;
            }
        }
        bad = type(uint256).max;
    }

    /// @dev pairFee[buyer * M + seller] (member indices).
    function _pairFee(bytes memory tm, uint256 buyer, uint256 seller) internal pure returns (int256) {
        (, uint256 M) = _array(tm, F_MEMBERS);
        (uint256 fees,) = _array(tm, F_PAIR_FEE);
        return int256(_at(tm, fees, buyer * M + seller));
    }

    /// @dev v[i] without a bounds check.
    function _v(int64[] memory v, uint256 i) internal pure returns (int256 x) {
        assembly ("memory-safe") {
            x := mload(add(v, mul(32, add(i, 1))))
        }
    }

    /// @dev a[i] without a bounds check.
    function _get(int256[] memory a, uint256 i) internal pure returns (int256 x) {
        assembly ("memory-safe") {
            x := mload(add(a, mul(32, add(i, 1))))
        }
    }

    /// @dev a[i] += x (wrapping) without a bounds check.
    function _add(int256[] memory a, uint256 i, int256 x) internal pure {
        assembly ("memory-safe") {
            let p := add(a, mul(32, add(i, 1)))
            mstore(p, add(mload(p), x))
        }
    }
}
