// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title StorageTermsCodec
/// @notice The layout of StorageMarket's terms (`abi.encode(Terms)`, see StorageMarket.sol) and of its
///         reveals, shared by StorageMarket and its settlement calculator.
abstract contract StorageTermsCodec {
    /// @dev Token base units per (1e-6 token/kWh x 1e-6 kWh) (StorageMarket.UNIT).
    int256 internal constant AMOUNT_UNIT = 1e6;
    /// @dev Values in front of the per-period net grid: C^E, C^P, throughput.
    uint256 internal constant HEAD = 3;
    /// @dev Bill items per participant, in `Bill` order (positive = credit to the participant).
    uint256 internal constant RENT = 0;
    uint256 internal constant USAGE = 1;
    uint256 internal constant TRANSMISSION = 2;
    uint256 internal constant GRID = 3;
    uint256 internal constant P2P = 4;
    uint256 internal constant ITEMS = 5;

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

    /// @dev The terms kept as the code (0x00 || abi.encode(Terms)) of the data contract `at`.
    function _loadTerms(address at) internal view returns (bytes memory data) {
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
}

/// @title StorageSettlement
/// @notice StorageMarket's terms validation and settlement arithmetic, moved out of StorageMarket to
///         keep its runtime code well below the EIP-170 limit. Stateless: StorageMarket creates one in
///         its constructor and calls it (`checkTerms` in createRound, `settlement` with STATICCALL in
///         settle and quote). Its errors have StorageMarket's (and PrivateRounds') signatures, and
///         StorageMarket re-raises its revert data unchanged.
contract StorageSettlement is StorageTermsCodec {
    /// @dev Largest `terms` (kept as the code of a data contract, below the 24576-byte code limit).
    uint256 internal constant MAX_TERMS_BYTES = 24_000;
    /// @dev Words at the end of `settlement`'s input.
    uint256 internal constant IN_TAIL = 8;

    error BadParameters(string reason);
    error NegativeQuantity(address participant, uint256 index);
    error CapacityExceeded(uint256 which, int256 total, uint256 limit);
    error TradeMismatch(address a, address b, uint256 period);

    // ------------------------------------------------------------------ terms validation

    /// @notice Validates a storage round's terms and its mechanism parameters (StorageMarket's
    ///         `_configure` but the duplicate-member check): a well-formed abi.encode(Terms), every
    ///         address and uint64 in range; T = gridBuy.length = gridSell.length >= 1, periods = 3 + T,
    ///         pairLanes in {0, T}, two rents (price band length 2), at least two members with one
    ///         storage fee each and members^2 pair fees, gridSell <= gridBuy, operator = coordinator,
    ///         centre non-zero. Reverts `BadParameters(reason)`. The input follows the selector as
    ///         raw words: periods, pairLanes, the price band's length, the coordinator, then the terms
    ///         (length word and bytes).
    function checkTerms() external pure {
        uint256 periods = _word4(0);
        uint256 pairLanes = _word4(1);
        uint256 prices = _word4(2);
        address coordinator = address(uint160(_word4(3)));
        bytes memory t = msg.data[164:];
        _checkEncoding(t);
        (uint256 buy, uint256 T) = _array(t, F_GRID_BUY);
        (uint256 sell, uint256 T2) = _array(t, F_GRID_SELL);
        if (T == 0 || T2 != T) revert BadParameters("grid prices length");
        if (periods != HEAD + T) revert BadParameters("periods");
        if (pairLanes != 0 && pairLanes != T) revert BadParameters("pair lanes");
        if (prices != 2) revert BadParameters("price band length");
        (, uint256 M) = _array(t, F_MEMBERS);
        if (M < 2) revert BadParameters("members");
        (, uint256 len) = _array(t, F_STORAGE_FEE);
        if (len != M) revert BadParameters("storage fee length");
        (, len) = _array(t, F_PAIR_FEE);
        if (len != M * M) revert BadParameters("pair fee length");
        for (uint256 i = 0; i < T; ++i) {
            if (_at(t, sell, i) > _at(t, buy, i)) revert BadParameters("grid sell above buy");
        }
        if (address(uint160(_head(t, F_OPERATOR))) != coordinator) revert BadParameters("operator");
        if (_head(t, F_CENTRE) == 0) revert BadParameters("centre");
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

    /// @notice The settlement of a concluded storage round. The input follows the selector as raw
    ///         32-byte words (StorageMarket builds it; the reveal lengths were checked and the terms
    ///         validated, so nothing is bounds-checked): values[count][len] (sign-extended int64,
    ///         participants in registration order), memberIndex[count], participant[count], then
    ///         termsData, gridAccount, rentE, rentP, T, pairs (0/1), len, count.
    /// @return out 32-byte words laid out as the memory of StorageMarket's return values, each array
    ///         its length then its elements: amounts[count], payees[3] = [operator, centre,
    ///         gridAccount], payeeAmounts[3], bill[ITEMS * count] (`bill[ITEMS * i + item]`).
    function settlement() external view returns (bytes memory out) {
        uint256 base = msg.data.length - 32 * IN_TAIL;
        uint256 count = _in(base, 7);
        out = new bytes(32 * (6 * count + 10));
        int256[] memory amounts;
        int256[] memory payeeAmounts;
        int256[] memory bill;
        assembly ("memory-safe") {
            amounts := add(out, 32)
            mstore(amounts, count)
            let payees := add(amounts, mul(32, add(count, 1)))
            mstore(payees, 3)
            payeeAmounts := add(payees, 128)
            mstore(payeeAmounts, 3)
            bill := add(payeeAmounts, 128)
            mstore(bill, mul(ITEMS, count))
        }
        bytes memory tm = _loadTerms(address(uint160(_in(base, 0))));
        _checkQuantities(tm, base, count);
        _storageAndGrid(tm, base, count, bill);
        if (_in(base, 5) != 0) _pairs(tm, base, count, bill);

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
        uint256 operator = _head(tm, F_OPERATOR);
        uint256 centre = _head(tm, F_CENTRE);
        uint256 grid = _in(base, 1);
        assembly ("memory-safe") {
            let payees := sub(payeeAmounts, 128)
            mstore(add(payees, 32), operator)
            mstore(add(payees, 64), centre)
            mstore(add(payees, 96), grid)
        }
    }

    /// @dev Word `k` of the input after the selector.
    function _word4(uint256 k) internal pure returns (uint256 w) {
        assembly ("memory-safe") {
            w := calldataload(add(4, mul(32, k)))
        }
    }

    /// @dev Word `k` of the input's tail.
    function _in(uint256 base, uint256 k) internal pure returns (uint256 w) {
        assembly ("memory-safe") {
            w := calldataload(add(base, mul(32, k)))
        }
    }

    /// @dev Calldata offset of participant i's values.
    function _values(uint256 base, uint256 i) internal pure returns (uint256) {
        return 4 + 32 * i * _in(base, 6);
    }

    /// @dev Member index of participant i.
    function _idx(uint256 base, uint256 count, uint256 i) internal pure returns (uint256) {
        return _in(base - 64 * count, i);
    }

    /// @dev Participant i's address.
    function _part(uint256 base, uint256 count, uint256 i) internal pure returns (address) {
        return address(uint160(_in(base - 32 * count, i)));
    }

    /// @dev C^E, C^P, throughput >= 0; the capacity sums within the store's capacity plus slack.
    function _checkQuantities(bytes memory tm, uint256 base, uint256 count) internal pure {
        int256 energy;
        int256 power;
        unchecked {
            for (uint256 i = 0; i < count; ++i) {
                uint256 v = _values(base, i);
                for (uint256 j = 0; j < HEAD; ++j) {
                    if (_v(v, j) < 0) revert NegativeQuantity(_part(base, count, i), j);
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
    function _storageAndGrid(bytes memory tm, uint256 base, uint256 count, int256[] memory bill) internal pure {
        (uint256 fees,) = _array(tm, F_STORAGE_FEE);
        unchecked {
            for (uint256 i = 0; i < count; ++i) {
                uint256 v = _values(base, i);
                // rents: input words 2 (energy) and 3 (power)
                int256 rent = int256(_in(base, 2)) * _v(v, 0) + int256(_in(base, 3)) * _v(v, 1);
                _add(bill, ITEMS * i + RENT, -rent * AMOUNT_UNIT);
                _add(bill, ITEMS * i + USAGE, -int256(_head(tm, F_USAGE_PRICE)) * _v(v, 2) * AMOUNT_UNIT);
                int256 fee = int256(_at(tm, fees, _idx(base, count, i)));
                _add(bill, ITEMS * i + TRANSMISSION, -fee * _v(v, 2) * AMOUNT_UNIT);
                _add(bill, ITEMS * i + GRID, _grid(tm, v, _in(base, 4)) * AMOUNT_UNIT);
            }
        }
    }

    /// @dev sum_t of -gridBuy[t] * net_t (import) or -gridSell[t] * net_t (export), before UNIT.
    function _grid(bytes memory tm, uint256 v, uint256 T) internal pure returns (int256 g) {
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
    function _pairs(bytes memory tm, uint256 base, uint256 count, int256[] memory bill) internal pure {
        unchecked {
            for (uint256 a = 0; a < count; ++a) {
                for (uint256 c = a + 1; c < count; ++c) {
                    uint256 bad = _settlePair(tm, base, count, bill, a, c);
                    if (bad != type(uint256).max) {
                        revert TradeMismatch(_part(base, count, a), _part(base, count, c), bad);
                    }
                }
            }
        }
    }

    /// @dev Books pair (a, c) into `bill`; returns the first mismatching period (type(uint256).max: none).
    function _settlePair(bytes memory tm, uint256 base, uint256 count, int256[] memory bill, uint256 a, uint256 c)
        internal
        pure
        returns (uint256 bad)
    {
        unchecked {
            uint256 T = _in(base, 4);
            // a's block for c is its (c-1)-th (c comes after a), c's block for a its a-th
            int256 pay;
            int256 boughtA;
            int256 boughtC;
            (pay, boughtA, boughtC, bad) = _pair(
                _values(base, a) + 32 * (HEAD + T + (c - 1) * 2 * T),
                _values(base, c) + 32 * (HEAD + T + a * 2 * T),
                T
            );
            if (bad != type(uint256).max) return bad;
            _add(bill, ITEMS * a + P2P, pay * AMOUNT_UNIT);
            _add(bill, ITEMS * c + P2P, -pay * AMOUNT_UNIT);
            boughtA *= _pairFee(tm, _idx(base, count, a), _idx(base, count, c)) * AMOUNT_UNIT;
            boughtC *= _pairFee(tm, _idx(base, count, c), _idx(base, count, a)) * AMOUNT_UNIT;
            _add(bill, ITEMS * a + TRANSMISSION, -boughtA);
            _add(bill, ITEMS * c + TRANSMISSION, -boughtC);
        }
    }

    /// @dev One pair's trade blocks at calldata offsets oa and oc: the payment from c to a (price x
    ///      energy, before UNIT), the energy each bought and the first mismatching period
    ///      (type(uint256).max: none).
    function _pair(uint256 oa, uint256 oc, uint256 T)
        internal
        pure
        returns (int256 pay, int256 boughtA, int256 boughtC, uint256 bad)
    {
        unchecked {
            for (uint256 t = 0; t < T; ++t) {
                int256 q = _v(oa, t);
                if (q != -_v(oc, t)) return (0, 0, 0, t);
                pay += (_v(oa, T + t) + _v(oc, T + t)) * q;
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

    /// @dev Value i of the values at calldata offset v.
    function _v(uint256 v, uint256 i) internal pure returns (int256 x) {
        assembly ("memory-safe") {
            x := calldataload(add(v, mul(32, i)))
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
