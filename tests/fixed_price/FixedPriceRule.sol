// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ISettlementRule, RoundParams, SettleContext} from "../../contracts/RoundTypes.sol";

/// @title FixedPriceRule
/// @notice The settlement rule of the test-only fixed-price mechanism: every participant pays its
///         net energy at the round's fixed price per period; the grid account balances.
contract FixedPriceRule is ISettlementRule {
    int256 public constant UNIT = 1e6;

    error BadParameters(string reason);

    /// @inheritdoc ISettlementRule
    function mechanism() external pure returns (string memory) {
        return "fixed-price";
    }

    /// @inheritdoc ISettlementRule
    function billItems() external pure returns (string[] memory items) {
        items = new string[](1);
        items[0] = "energy";
    }

    /// @notice One price per slot, fixed: floor = cap; no pair lanes, no terms.
    /// @inheritdoc ISettlementRule
    function configure(RoundParams calldata p, address) external pure {
        if (p.priceFloor.length != p.slots) revert BadParameters("price band length");
        for (uint256 t = 0; t < p.slots; ++t) {
            if (p.priceFloor[t] != p.priceCap[t]) revert BadParameters("price not fixed");
        }
        if (p.pairLanes != 0 || p.terms.length != 0) revert BadParameters("no pairs, no terms");
    }

    /// @inheritdoc ISettlementRule
    function revealLength(uint16 slots, uint16, uint256) external pure returns (uint256) {
        return slots;
    }

    /// @notice amount_i = sum_t price_t * net_i,t; the grid account pays minus the total.
    /// @inheritdoc ISettlementRule
    function settle(SettleContext calldata ctx, int256[] calldata values)
        external
        pure
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts, int256[][] memory bills)
    {
        uint256 count = ctx.participants.length;
        amounts = new int256[](count);
        bills = new int256[][](count);
        payeeAmounts = new int256[](1);
        for (uint256 i = 0; i < count; ++i) {
            for (uint256 t = 0; t < ctx.slots; ++t) {
                amounts[i] += int256(uint256(ctx.prices[t])) * values[i * ctx.revealLength + t] * UNIT;
            }
            bills[i] = new int256[](1);
            bills[i][0] = amounts[i];
            payeeAmounts[0] -= amounts[i];
        }
        payees = new address[](1);
        payees[0] = ctx.gridAccount;
    }
}
