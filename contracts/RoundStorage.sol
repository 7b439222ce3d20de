// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CloseReason, IPrivateRounds, Phase, Round, Step} from "./RoundTypes.sol";

/// @title RoundStorage
/// @notice The state of the round contract and the helpers every part of it uses. PrivateRounds and
///         the modules it runs by DELEGATECALL (RoundSettlement) inherit it, so they share one
///         storage layout: every phase change passes through `_setPhase`, every ledger move
///         through `_update`.
abstract contract RoundStorage is IPrivateRounds {
    uint256 internal constant MAX_MODULUS_BYTES = 1024;
    uint256 internal constant MAX_DATA_BYTES = 24_000; // SSTORE2 data below the 24,576-byte code limit
    /// @dev openings[BLAME_KEY + position]: a participant's blame opening (challengeable as an iteration's).
    uint32 internal constant BLAME_KEY = 1 << 31;

    mapping(uint256 => Round) internal _rounds;
    /// @notice Number of rounds created; round ids are 1..roundCount.
    uint256 public roundCount;

    function _round(uint256 roundId) internal view returns (Round storage r) {
        r = _rounds[roundId];
        if (!r.exists) revert UnknownRound(roundId);
    }

    /// @dev Phases only move forward: Registering -> Iterating -> Concluded -> Settled, or to
    ///      Closed from any phase before Settled.
    function _setPhase(Round storage r, uint256 roundId, Phase next) internal {
        Phase current = r.phase;
        if (next <= current || current == Phase.Settled) revert WrongPhase(roundId, current, next);
        r.phase = next;
        emit PhaseChanged(roundId, current, next);
    }

    /// @dev Begins a step (or phase) whose deadline is `window` blocks from now.
    function _beginStep(Round storage r, uint256 roundId, Step step, uint32 window) internal {
        uint64 deadline = uint64(block.number) + window;
        r.step = step;
        r.deadline = deadline;
        emit StepChanged(roundId, r.iteration, r.phase, step, deadline);
    }

    /// @dev Reverts once the current step's deadline has passed.
    function _requireOnTime(Round storage r) internal view {
        uint64 deadline = r.deadline;
        if (block.number > deadline) revert DeadlinePassed(deadline);
    }

    /// @dev Closes the round without trading: every deposit becomes withdrawable in full.
    function _close(Round storage r, uint256 roundId, CloseReason reason) internal {
        _setPhase(r, roundId, Phase.Closed);
        emit Closed(roundId, r.iteration, reason, msg.sender);
    }

    function _requireCoordinator(Round storage r) internal view {
        address coordinator = r.coordinator;
        if (msg.sender != coordinator) revert NotCoordinator(msg.sender, coordinator);
    }

    function _requirePhase(Round storage r, uint256 roundId, Phase expected) internal view {
        Phase current = r.phase;
        if (current != expected) revert WrongPhase(roundId, current, expected);
    }

    /// @dev `paid` > 0 debits `account`, < 0 credits it (deposits credit, withdrawals and payments
    ///      debit). Returns the new balance.
    function _update(Round storage r, address account, int256 paid) internal returns (uint256 balance) {
        balance = r.balances[account];
        if (paid > 0) {
            uint256 needed = uint256(paid);
            if (balance < needed) revert InsufficientDeposit(account, balance, needed);
            balance -= needed;
        } else {
            balance += uint256(-paid);
        }
        r.balances[account] = balance;
    }

    /// @dev The data kept as the code (0x00 || data) of the contract at `at` (SSTORE2); none for address(0).
    function _loadData(address at) internal view returns (bytes memory data) {
        if (at == address(0)) return data;
        uint256 len = at.code.length - 1;
        data = new bytes(len);
        assembly ("memory-safe") {
            extcodecopy(at, add(data, 32), 1, len)
        }
    }

    /// @dev keccak256 of a reveal's 32-byte words (abi.encodePacked(int256[])), each checked to be a
    ///      sign-extended int64 (`RevealOutOfRange`). One pass, no per-element decoding.
    function _valuesHash(int256[] calldata v, address who) internal pure returns (bytes32 h) {
        uint256 bad = type(uint256).max;
        assembly ("memory-safe") {
            let p := mload(0x40)
            let n := mul(v.length, 32)
            calldatacopy(p, v.offset, n)
            for { let i := 0 } lt(i, n) { i := add(i, 32) } {
                let x := mload(add(p, i))
                if iszero(eq(signextend(7, x), x)) {
                    bad := div(i, 32)
                    break
                }
            }
            h := keccak256(p, n)
        }
        if (bad != type(uint256).max) revert RevealOutOfRange(who, bad);
    }

    /// @dev A price vector of the band's length, each price inside its band.
    function _checkPrices(Round storage r, uint64[] calldata p) internal view {
        uint64[] storage lo = r.priceFloor;
        uint256 n = lo.length;
        if (p.length != n) revert PriceLength(p.length, n);
        uint64[] storage hi = r.priceCap;
        for (uint256 t = 0; t < n; ++t) {
            uint64 v = p[t];
            uint64 f = lo[t];
            uint64 c = hi[t];
            if (v < f || v > c) revert PriceOutOfBand(t, v, f, c);
        }
    }
}
