// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ISettlementRule, RoundParams, SettleContext, Standing} from "../RoundTypes.sol";

/// @title TariffRule
/// @notice Settlement of the weakly centralised tariff market (Qi, Ai, Ji, Li, Wang, Pan, "A weakly
///         centralized multiple prosumers energy-sharing mechanism that takes into account privacy
///         protection", Electric Power Engineering Technology): internal trades at the converged tariff, the
///         community's residual traded with the grid account at retail (band cap) or feed-in (band
///         floor) price, pro rata on the long side.
/// @dev Units: energy int64 of 1e-6 kWh, prices uint64 of 1e-6 token per kWh, token amounts in
///      18-decimal base units, amount = price * energy * 1e6. Positive amounts are paid. The
///      arithmetic is unchecked: the core admits only values within int64, prices are uint64, so
///      no product or sum of a round's products can overflow int256.
contract TariffRule is ISettlementRule {
    /// @notice Token base units per (1e-6 token/kWh x 1e-6 kWh).
    int256 public constant UNIT = 1e6;

    error BadParameters(string reason);

    /// @inheritdoc ISettlementRule
    function mechanism() external pure returns (string memory) {
        return "tariff";
    }

    /// @inheritdoc ISettlementRule
    function billItems() external pure returns (string[] memory items) {
        return items;
    }

    /// @notice A Paillier key, one price per slot (period), no pair lanes, no terms.
    /// @inheritdoc ISettlementRule
    function configure(RoundParams calldata p, address) external pure {
        if (p.n.length == 0) revert BadParameters("key");
        if (p.priceFloor.length != p.slots) revert BadParameters("price band length");
        if (p.pairLanes != 0) revert BadParameters("pair lanes");
        if (p.terms.length != 0) revert BadParameters("terms");
    }

    /// @notice One value per period: internal purchase (> 0) or sale (< 0), 1e-6 kWh.
    /// @inheritdoc ISettlementRule
    function revealLength(uint16 slots, uint16, uint256) external pure returns (uint256) {
        return slots;
    }

    /// @notice Per period t with tariff p, retail c (band cap) and feed-in f (band floor), bought B
    ///         and sold S by the participants that stayed to the end: r = B - S >= 0: sellers
    ///         receive p per kWh, buyers pay (p*S + c*r) pro rata (rounded down); r < 0: buyers pay
    ///         p per kWh, sellers receive (p*B + f*|r|) pro rata (rounded down). The fallback for a
    ///         participant that dropped out: it trades what it last committed with the grid, buying
    ///         at c and selling at f (nothing if it revealed nothing). The grid account balances
    ///         every period: payees = [gridAccount].
    /// @inheritdoc ISettlementRule
    function settle(SettleContext calldata ctx, int256[] calldata values)
        external
        pure
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts, int256[][] memory bills)
    {
        int256 grid;
        amounts = new int256[](ctx.participants.length);
        bool anyDropped;
        for (uint256 i = 0; i < amounts.length; ++i) {
            if (ctx.standing[i] != Standing.Final) anyDropped = true;
        }
        for (uint256 t = 0; t < ctx.slots; ++t) {
            int256[] memory xs = _period(values, ctx.revealLength, t, amounts.length);
            if (anyDropped) grid -= _fallback(xs, ctx.standing, ctx.priceFloor[t], ctx.priceCap[t], amounts);
            grid -= _settlePeriod(xs, ctx.prices[t], ctx.priceFloor[t], ctx.priceCap[t], amounts);
        }
        payees = new address[](1);
        payees[0] = ctx.gridAccount;
        payeeAmounts = new int256[](1);
        payeeAmounts[0] = grid;
        return (amounts, payees, payeeAmounts, bills);
    }

    /// @dev Every participant's value of period t.
    function _period(int256[] calldata values, uint256 len, uint256 t, uint256 count)
        internal
        pure
        returns (int256[] memory xs)
    {
        xs = new int256[](count);
        if (count != 0 && values.length < (count - 1) * len + t + 1) revert BadParameters("reveal length");
        for (uint256 i = 0; i < count; ++i) {
            uint256 at = i * len + t;
            int256 x;
            assembly ("memory-safe") {
                x := calldataload(add(values.offset, shl(5, at)))
            }
            xs[i] = x;
        }
    }

    /// @dev Settles the dropped participants' values of a period with the grid (retail for a purchase,
    ///      feed-in for a sale) and zeroes them in `xs`; returns the sum of their payments.
    function _fallback(int256[] memory xs, Standing[] calldata standing, uint64 feedIn, uint64 retail, int256[] memory amounts)
        internal
        pure
        returns (int256 paid)
    {
        unchecked {
            for (uint256 i = 0; i < xs.length; ++i) {
                if (standing[i] == Standing.Final) continue;
                int256 x = xs[i];
                int256 a = x * int256(uint256(x > 0 ? retail : feedIn)) * UNIT;
                amounts[i] += a;
                paid += a;
                xs[i] = 0;
            }
        }
    }

    /// @dev Adds a period's payments (`xs`: every participant's value) to `amounts`; returns their sum.
    function _settlePeriod(
        int256[] memory xs,
        uint64 price,
        uint64 feedIn,
        uint64 retail,
        int256[] memory amounts
    ) internal pure returns (int256 periodSum) {
        unchecked {
            uint256 count = amounts.length;
            int256 bought;
            int256 sold;
            for (uint256 i = 0; i < count; ++i) {
                int256 x = xs[i];
                if (x > 0) bought += x;
                else sold -= x;
            }
            int256 p = int256(uint256(price));
            int256 residual = bought - sold;
            if (residual >= 0) {
                // shortage: sellers get p; buyers share p*S + retail*r pro rata
                int256 buyersPay = (p * sold + int256(uint256(retail)) * residual) * UNIT;
                for (uint256 i = 0; i < count; ++i) {
                    int256 x = xs[i];
                    int256 a;
                    if (x > 0) a = (buyersPay * x) / bought;
                    else if (x < 0) a = x * p * UNIT;
                    amounts[i] += a;
                    periodSum += a;
                }
            } else {
                // surplus: buyers pay p; sellers share p*B + feedIn*|r| pro rata
                int256 sellersGet = (p * bought + int256(uint256(feedIn)) * (-residual)) * UNIT;
                for (uint256 i = 0; i < count; ++i) {
                    int256 x = xs[i];
                    int256 a;
                    if (x > 0) a = x * p * UNIT;
                    else if (x < 0) a = -((sellersGet * -x) / sold);
                    amounts[i] += a;
                    periodSum += a;
                }
            }
        }
    }
}
