// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ISettlementRule, RoundParams, SettleContext, Standing} from "../RoundTypes.sol";

/// @notice The terms of a storage round (`RoundParams.terms = abi.encode(StorageTerms)`). Member
///         indices are positions in the round's allow-list (`RoundParams.members`).
struct StorageTerms {
    address operator; // receives capacity rents and usage fees (must be the coordinator)
    address centre; // P2P centre: receives transmission fees
    uint64 energyCap; // shared store energy capacity, 1e-6 kWh
    uint64 powerCap; // power capacity, 1e-6 kW
    uint64 capacitySlack; // tolerance on the sums of revealed capacities, 1e-6
    uint64 usagePrice; // 1e-6 token per kWh of shared-storage throughput (to the operator)
    uint64[] storageFee; // per member: transmission fee to/from the store, 1e-6 token/kWh (to the centre)
    uint64[] pairFee; // members^2, row-major [buyer * M + seller]: fee paid by the buyer (to the centre)
    uint64[] gridBuy; // per period: retail price (the prosumer buys from the grid account)
    uint64[] gridSell; // per period: feed-in price
}

/// @title StorageRule
/// @notice Settlement of shared-storage capacity renting with peer-to-peer trading (Sun, Chen,
///         Chen, Tang, Mei, "A capacity renting framework for shared energy storage considering
///         peer-to-peer energy trading of prosumers with privacy protection", arXiv:2411.06107).
///         The coordinator is the storage operator; the public price vector is the pair of
///         capacity rents (energy, power). Books rents and usage fees to the operator, transmission
///         fees to the P2P centre, grid energy against the grid account and the P2P trades between
///         the prosumers.
/// @dev Units: energy int64 of 1e-6 kWh (power 1e-6 kW), prices uint64 of 1e-6 token per kWh (per kW
///      for the power rent), token amounts in 18-decimal base units, amount = price * quantity * 1e6.
///      The arithmetic is unchecked: the core admits only values within int64 and prices are
///      uint64, so no product (< 2^148) or sum of a round's products can overflow int256.
///      Positive amounts are paid. Reveal layout per participant (registration order), T periods:
///      [C^E, C^P, throughput, net grid[0..T-1]] then, if the round has pair lanes, for every other
///      participant q in registration order: trade[T] (sale from me to q; negative = purchase) and
///      priceHalf[T] (my half of the pair price, 1e-6 token per kWh).
contract StorageRule is ISettlementRule {
    /// @notice Token base units per (1e-6 token/kWh x 1e-6 kWh).
    int256 public constant UNIT = 1e6;
    /// @dev Values in front of the per-period net grid: C^E, C^P, throughput.
    uint256 internal constant HEAD = 3;
    /// @dev Bill items per participant, in `billItems` order (positive = paid by the participant).
    uint256 internal constant RENT = 0;
    uint256 internal constant USAGE = 1;
    uint256 internal constant TRANSMISSION = 2;
    uint256 internal constant GRID = 3;
    uint256 internal constant P2P = 4;
    uint256 internal constant ITEMS = 5;

    error BadParameters(string reason);
    error NegativeQuantity(address participant, uint256 index);
    error CapacityExceeded(uint256 which, int256 total, uint256 limit);
    error TradeMismatch(address a, address b, uint256 period);

    /// @inheritdoc ISettlementRule
    function mechanism() external pure returns (string memory) {
        return "storage-p2p";
    }

    /// @inheritdoc ISettlementRule
    function billItems() external pure returns (string[] memory items) {
        items = new string[](ITEMS);
        (items[RENT], items[USAGE], items[TRANSMISSION], items[GRID], items[P2P]) =
            ("rent", "usage", "transmission", "grid", "p2p");
    }

    /// @notice The terms decoded (reverts on any malformed encoding).
    /// @param data abi.encode(StorageTerms).
    /// @return t the terms.
    function decodeTerms(bytes calldata data) external pure returns (StorageTerms memory t) {
        return abi.decode(data, (StorageTerms));
    }

    /// @notice A well-formed abi.encode(StorageTerms) (`BadParameters("terms encoding")`), a key,
    ///         T = gridBuy.length = gridSell.length >= 1, slots = 3 + T, pairLanes in {0, T}, two
    ///         rents (price band length 2), an allow-list of at least two members with one storage
    ///         fee each and members^2 pair fees, gridSell <= gridBuy, operator = coordinator, centre
    ///         non-zero.
    /// @inheritdoc ISettlementRule
    function configure(RoundParams calldata p, address coordinator) external view {
        if (p.n.length == 0) revert BadParameters("key");
        StorageTerms memory t;
        try this.decodeTerms(p.terms) returns (StorageTerms memory decoded) {
            t = decoded;
        } catch {
            revert BadParameters("terms encoding");
        }
        uint256 T = t.gridBuy.length;
        if (T == 0 || t.gridSell.length != T) revert BadParameters("grid prices length");
        if (p.slots != HEAD + T) revert BadParameters("slots");
        if (p.pairLanes != 0 && p.pairLanes != T) revert BadParameters("pair lanes");
        if (p.priceFloor.length != 2) revert BadParameters("price band length");
        uint256 M = p.members.length;
        if (M < 2) revert BadParameters("members");
        if (t.storageFee.length != M) revert BadParameters("storage fee length");
        if (t.pairFee.length != M * M) revert BadParameters("pair fee length");
        for (uint256 i = 0; i < T; ++i) {
            if (t.gridSell[i] > t.gridBuy[i]) revert BadParameters("grid sell above buy");
        }
        if (t.operator != coordinator) revert BadParameters("operator");
        if (t.centre == address(0)) revert BadParameters("centre");
    }

    /// @notice 3 + T, plus 2 T per other participant if the round has pair lanes.
    /// @inheritdoc ISettlementRule
    function revealLength(uint16 slots, uint16 pairLanes, uint256 participants) external pure returns (uint256 len) {
        len = slots;
        if (pairLanes != 0 && participants > 1) len += 2 * (len - HEAD) * (participants - 1);
    }

    /// @notice payees = [operator, centre, gridAccount]; one bill of `billItems` per participant. The
    ///         fallback for a participant that dropped out: nothing (an empty bill), and no trade
    ///         with it counts.
    /// @inheritdoc ISettlementRule
    function settle(SettleContext calldata ctx, int256[] calldata values)
        external
        pure
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts, int256[][] memory bills)
    {
        StorageTerms memory t = abi.decode(ctx.terms, (StorageTerms));
        uint256 count = ctx.participants.length;
        uint256 len = ctx.revealLength;
        _checkQuantities(t, ctx, values, len);
        bills = new int256[][](count);
        for (uint256 i = 0; i < count; ++i) {
            bills[i] = ctx.standing[i] == Standing.Final
                ? _storageAndGrid(t, ctx, values[i * len:(i + 1) * len], ctx.memberIndex[i])
                : new int256[](ITEMS);
        }
        if (ctx.pairLanes != 0) _pairs(t, ctx, values, bills);

        amounts = new int256[](count);
        payeeAmounts = new int256[](3);
        for (uint256 i = 0; i < count; ++i) {
            int256[] memory b = bills[i];
            int256 toOperator = b[RENT] + b[USAGE];
            amounts[i] = toOperator + b[TRANSMISSION] + b[GRID] + b[P2P];
            payeeAmounts[0] -= toOperator;
            payeeAmounts[1] -= b[TRANSMISSION];
            payeeAmounts[2] -= b[GRID];
        }
        payees = new address[](3);
        (payees[0], payees[1], payees[2]) = (t.operator, t.centre, ctx.gridAccount);
    }

    /// @dev C^E, C^P, throughput >= 0; the capacity sums within the store's capacity plus slack.
    function _checkQuantities(StorageTerms memory t, SettleContext calldata ctx, int256[] calldata values, uint256 len)
        internal
        pure
    {
        int256 energy;
        int256 power;
        address[] calldata parts = ctx.participants;
        for (uint256 i = 0; i < parts.length; ++i) {
            if (ctx.standing[i] != Standing.Final) continue;
            int256[] calldata v = values[i * len:(i + 1) * len];
            for (uint256 j = 0; j < HEAD; ++j) {
                if (v[j] < 0) revert NegativeQuantity(parts[i], j);
            }
            energy += v[0];
            power += v[1];
        }
        uint256 limit = uint256(t.energyCap) + t.capacitySlack;
        if (energy > int256(limit)) revert CapacityExceeded(0, energy, limit);
        limit = uint256(t.powerCap) + t.capacitySlack;
        if (power > int256(limit)) revert CapacityExceeded(1, power, limit);
    }

    /// @dev One participant's rent and usage (to the operator), storage transmission (to the
    ///      centre) and grid energy, as a fresh bill.
    function _storageAndGrid(StorageTerms memory t, SettleContext calldata ctx, int256[] calldata v, uint256 member)
        internal
        pure
        returns (int256[] memory bill)
    {
        bill = new int256[](ITEMS);
        uint256 T = t.gridBuy.length;
        if (v.length < HEAD + T) revert BadParameters("reveal length");
        unchecked {
            int256 throughput = _at(v, 2);
            bill[RENT] = (int256(uint256(ctx.prices[0])) * _at(v, 0) + int256(uint256(ctx.prices[1])) * _at(v, 1)) * UNIT;
            bill[USAGE] = int256(uint256(t.usagePrice)) * throughput * UNIT;
            bill[TRANSMISSION] = int256(uint256(t.storageFee[member])) * throughput * UNIT;
            int256 g;
            for (uint256 h = 0; h < T; ++h) {
                int256 net = _at(v, HEAD + h);
                g += int256(uint256(net > 0 ? t.gridBuy[h] : t.gridSell[h])) * net;
            }
            bill[GRID] = g * UNIT;
        }
    }

    /// @dev Every pair a < c (registration order): a's trade block for c must be minus c's block for
    ///      a in every period; c pays a sum_t (halfA_t + halfC_t) * trade_t; each buyer pays the
    ///      centre its transmission fee pairFee[buyer * M + seller] per kWh bought.
    function _pairs(StorageTerms memory t, SettleContext calldata ctx, int256[] calldata values, int256[][] memory bills)
        internal
        pure
    {
        uint256 count = ctx.participants.length;
        for (uint256 a = 0; a < count; ++a) {
            if (ctx.standing[a] != Standing.Final) continue;
            for (uint256 c = a + 1; c < count; ++c) {
                if (ctx.standing[c] != Standing.Final) continue;
                int256[3] memory q = _trades(ctx, values, a, c, t.gridBuy.length);
                _book(t, ctx, bills, a, c, q);
            }
        }
    }

    /// @dev Pair (a, c)'s trades checked against each other: [the payment from c to a, what a
    ///      bought, what c bought].
    function _trades(SettleContext calldata ctx, int256[] calldata values, uint256 a, uint256 c, uint256 T)
        internal
        pure
        returns (int256[3] memory q)
    {
        // a's block for c is its (c-1)-th (c comes after a), c's block for a its a-th
        uint256 oa = a * ctx.revealLength + HEAD + T + (c - 1) * 2 * T;
        uint256 oc = c * ctx.revealLength + HEAD + T + a * 2 * T;
        uint256 bad;
        (q[0], q[1], q[2], bad) = _pair(values[oa:oa + 2 * T], values[oc:oc + 2 * T], T);
        if (bad != type(uint256).max) revert TradeMismatch(ctx.participants[a], ctx.participants[c], bad);
    }

    /// @dev Books pair (a, c): c pays a q[0]; each buyer pays its transmission fee to the centre.
    function _book(
        StorageTerms memory t,
        SettleContext calldata ctx,
        int256[][] memory bills,
        uint256 a,
        uint256 c,
        int256[3] memory q
    ) internal pure {
        uint256 M = t.storageFee.length;
        uint256 ma = ctx.memberIndex[a];
        uint256 mc = ctx.memberIndex[c];
        unchecked {
            bills[a][P2P] -= q[0] * UNIT;
            bills[c][P2P] += q[0] * UNIT;
            bills[a][TRANSMISSION] += q[1] * int256(uint256(t.pairFee[ma * M + mc])) * UNIT;
            bills[c][TRANSMISSION] += q[2] * int256(uint256(t.pairFee[mc * M + ma])) * UNIT;
        }
    }

    /// @dev One pair's blocks (trade[T] then priceHalf[T] each): the payment from c to a (price x
    ///      energy, before UNIT), the energy each bought and the first mismatching period
    ///      (type(uint256).max: none).
    function _pair(int256[] calldata ba, int256[] calldata bc, uint256 T)
        internal
        pure
        returns (int256 pay, int256 boughtA, int256 boughtC, uint256 bad)
    {
        unchecked {
            for (uint256 h = 0; h < T; ++h) {
                (int256 q, int256 r) = (_at(ba, h), _at(bc, h));
                if (q != -r) return (0, 0, 0, h);
                pay += (_at(ba, T + h) + _at(bc, T + h)) * q;
                if (q < 0) boughtA -= q;
                else boughtC += q;
            }
        }
        bad = type(uint256).max;
    }

    /// @dev v[i] of a slice whose bounds the caller checked (the slicing does), without the
    ///      per-access bounds check.
    function _at(int256[] calldata v, uint256 i) internal pure returns (int256 x) {
        assembly ("memory-safe") {
            x := calldataload(add(v.offset, shl(5, i)))
        }
    }
}
