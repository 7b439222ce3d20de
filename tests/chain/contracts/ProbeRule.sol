// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ISettlementRule, RoundParams, SettleContext} from "../../../contracts/RoundTypes.sol";

/// @title ProbeRule
/// @notice A settlement rule for the core's tests only (compiled by tests/chain, never deployed by
///         gridshare): it accepts every round (with or without a key), reveals `slots` values per
///         participant, makes participant i pay its first revealed value (token base units, positive
///         = paid) to the grid account and bills [member index, reveal length, first price, standing]
///         each, so that a test sees what the core passed in the settle context. `terms` = abi.encode(uint8
///         mode) selects a broken answer to exercise the core's checks of it: 1 one unit too much
///         for the grid account, 2 one bill too few, 3 one amount too many.
contract ProbeRule is ISettlementRule {
    uint8 public constant BALANCED = 0;
    uint8 public constant IMBALANCED = 1;
    uint8 public constant BILL_MISSING = 2;
    uint8 public constant EXTRA_AMOUNT = 3;

    function mechanism() external pure returns (string memory) {
        return "probe";
    }

    function billItems() external pure returns (string[] memory items) {
        items = new string[](4);
        (items[0], items[1], items[2], items[3]) = ("member index", "reveal length", "first price", "standing");
    }

    function configure(RoundParams calldata, address) external pure {}

    function revealLength(uint16 slots, uint16, uint256) external pure returns (uint256) {
        return slots;
    }

    function settle(SettleContext calldata ctx, int256[] calldata values)
        external
        pure
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts, int256[][] memory bills)
    {
        uint8 mode = ctx.terms.length == 0 ? BALANCED : abi.decode(ctx.terms, (uint8));
        uint256 count = ctx.participants.length;
        uint256 len = ctx.revealLength;
        amounts = new int256[](mode == EXTRA_AMOUNT ? count + 1 : count);
        bills = new int256[][](mode == BILL_MISSING ? count - 1 : count);
        payees = new address[](1);
        payees[0] = ctx.gridAccount;
        payeeAmounts = new int256[](1);
        for (uint256 i = 0; i < count; ++i) {
            amounts[i] = len == 0 ? int256(0) : values[i * len];
            payeeAmounts[0] -= amounts[i];
            if (i < bills.length) {
                bills[i] = new int256[](4);
                bills[i][0] = int256(ctx.memberIndex[i]);
                bills[i][1] = int256(len);
                bills[i][2] = int256(uint256(ctx.prices[0]));
                bills[i][3] = int256(uint256(ctx.standing[i]));
            }
        }
        if (mode == IMBALANCED) payeeAmounts[0] += 1;
    }
}
