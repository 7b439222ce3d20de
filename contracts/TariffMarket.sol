// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {PrivateRounds} from "./PrivateRounds.sol";

/// @title TariffMarket
/// @notice The weakly centralised tariff market on top of the generic private rounds: settlement
///         at the converged tariff with the community's residual traded with the grid account.
/// @dev Units: energy int64 of 1e-6 kWh, prices uint64 of 1e-6 token per kWh, token amounts in
///      18-decimal base units, amount = price * energy * 1e6. Positive amounts are credits.
contract TariffMarket is PrivateRounds {
    /// @notice Token base units per (1e-6 token/kWh x 1e-6 kWh).
    int256 public constant UNIT = 1e6;

    /// @param token_ the ERC-20 settlement token.
    constructor(IERC20 token_) PrivateRounds(token_) {}

    /// @dev The price band and the tariff have one price per period (`priceFloor.length == periods`);
    ///      no pair lanes, no terms.
    function _configure(uint256, RoundParams calldata p) internal pure override {
        if (p.priceFloor.length != p.periods) revert BadParameters("price band length");
        if (p.pairLanes != 0) revert BadParameters("pair lanes");
        if (p.terms.length != 0) revert BadParameters("terms");
    }

    /// @dev One value per period: internal purchase (> 0) or sale (< 0), 1e-6 kWh.
    function _revealLength(uint256 roundId) internal view override returns (uint256) {
        return _rounds[roundId].periods;
    }

    /// @dev Per period t with tariff p, retail c (band cap) and feed-in f (band floor):
    ///      r = B - S >= 0: sellers receive p per kWh, buyers pay (p*S + c*r) pro rata (floor);
    ///      r < 0: buyers pay p per kWh, sellers receive (p*B + f*|r|) pro rata (floor).
    ///      The grid account balances every period: payees = [gridAccount].
    function _settlementAmounts(uint256 roundId, int64[][] memory values)
        internal
        view
        override
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts)
    {
        Round storage r = _rounds[roundId];
        int256 gridAmount;
        uint256 T = r.periods;
        uint64[] memory prices = r.tariff;
        uint64[] memory floors = r.priceFloor;
        uint64[] memory caps = r.priceCap;
        amounts = new int256[](values.length);
        for (uint256 t = 0; t < T; ++t) {
            gridAmount -= _settlePeriod(values, t, prices[t], floors[t], caps[t], amounts);
        }
        payees = new address[](1);
        payees[0] = r.gridAccount;
        payeeAmounts = new int256[](1);
        payeeAmounts[0] = gridAmount;
    }

    /// @dev Adds period t's amounts to `amounts`; returns their sum over the participants.
    function _settlePeriod(
        int64[][] memory values,
        uint256 t,
        uint64 price,
        uint64 feedIn,
        uint64 retail,
        int256[] memory amounts
    ) internal pure returns (int256 periodSum) {
        uint256 count = values.length;
        int256 bought;
        int256 sold;
        for (uint256 i = 0; i < count; ++i) {
            int256 x = values[i][t];
            if (x > 0) bought += x;
            else sold -= x;
        }
        int256 p = int256(uint256(price));
        int256 residual = bought - sold;
        if (residual >= 0) {
            // shortage: sellers get p; buyers share p*S + retail*r pro rata
            int256 buyersPay = (p * sold + int256(uint256(retail)) * residual) * UNIT;
            for (uint256 i = 0; i < count; ++i) {
                int256 x = values[i][t];
                int256 a;
                if (x > 0) a = -((buyersPay * x) / bought);
                else if (x < 0) a = -x * p * UNIT;
                amounts[i] += a;
                periodSum += a;
            }
        } else {
            // surplus: buyers pay p; sellers share p*B + feedIn*|r| pro rata
            int256 sellersGet = (p * bought + int256(uint256(feedIn)) * (-residual)) * UNIT;
            for (uint256 i = 0; i < count; ++i) {
                int256 x = values[i][t];
                int256 a;
                if (x > 0) a = -(x * p * UNIT);
                else if (x < 0) a = (sellersGet * -x) / sold;
                amounts[i] += a;
                periodSum += a;
            }
        }
    }
}
