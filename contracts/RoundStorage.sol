// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CloseReason, DropReason, Fault, IPrivateRounds, Member, Phase, Round, Step} from "./RoundTypes.sol";

/// @title RoundStorage
/// @notice The state of the round contract and the helpers every part of it uses. PrivateRounds and
///         the modules it runs by DELEGATECALL (RoundOpenings, RoundSettlement, RoundDisputes)
///         inherit it, so they share one storage layout: every phase change passes through
///         `_setPhase`, every ledger move through `_update`, every forfeit through `_forfeit`.
abstract contract RoundStorage is IPrivateRounds {
    uint256 internal constant MAX_MODULUS_BYTES = 1024;
    uint256 internal constant MAX_DATA_BYTES = 24_000; // SSTORE2 data below the 24,576-byte code limit
    /// @notice The privacy minimum: a round starts, and goes on, with at least this many participants.
    uint256 public constant MIN_PARTICIPANTS = 3;

    mapping(uint256 => Round) internal _rounds;
    /// @notice Number of rounds created; round ids are 1..roundCount.
    uint256 public roundCount;

    function _round(uint256 roundId) internal view returns (Round storage r) {
        r = _rounds[roundId];
        if (!r.exists) revert UnknownRound(roundId);
    }

    // ------------------------------------------------------------------ opening keys
    // Every opening anyone may challenge is kept under a key: an attempt's aggregate (the
    // coordinator's decryption), a submitter's opening in a dispute, a participant's in a blame step.

    function _aggregateKey(uint32 k, uint16 attempt) internal pure returns (uint256) {
        return (uint256(k) << 16) | attempt;
    }

    function _disputeKey(uint32 k, uint16 attempt, uint16 position) internal pure returns (uint256) {
        return (uint256(1) << 128) | (uint256(k) << 32) | (uint256(attempt) << 16) | position;
    }

    function _blameKey(uint16 position) internal pure returns (uint256) {
        return (uint256(2) << 128) | position;
    }

    // ------------------------------------------------------------------ phases and steps

    /// @dev Phases only move forward: Registering -> Iterating -> Concluded -> Settled, or to
    ///      Closed from any phase before Settled.
    function _setPhase(Round storage r, uint256 roundId, Phase next) internal {
        Phase current = r.phase;
        if (next <= current || current == Phase.Settled) revert WrongPhase(roundId, current, next);
        r.phase = next;
        emit PhaseChanged(roundId, current, next);
    }

    /// @dev Begins a step (or attempt) whose deadline is `window` blocks from now.
    function _beginStep(Round storage r, uint256 roundId, Step step, uint32 window) internal {
        uint64 deadline = uint64(block.number) + window;
        r.step = step;
        r.deadline = deadline;
        emit StepChanged(roundId, r.iteration, r.phase, step, r.attempt, deadline);
    }

    /// @dev Opens a submission attempt of the current iteration (the first from Registering).
    function _beginAttempt(Round storage r, uint256 roundId) internal {
        if (r.phase != Phase.Iterating) _setPhase(r, roundId, Phase.Iterating);
        r.submissions = 0;
        r.aggregatedAttempt = false;
        _beginStep(r, roundId, Step.Submitting, r.windows.submission);
    }

    /// @dev Reverts once the current step's deadline has passed.
    function _requireOnTime(Round storage r) internal view {
        uint64 deadline = r.deadline;
        if (block.number > deadline) revert DeadlinePassed(deadline);
    }

    function _requireCoordinator(Round storage r) internal view {
        address coordinator = r.coordinator;
        if (msg.sender != coordinator) revert NotCoordinator(msg.sender, coordinator);
    }

    function _requirePhase(Round storage r, uint256 roundId, Phase expected) internal view {
        Phase current = r.phase;
        if (current != expected) revert WrongPhase(roundId, current, expected);
    }

    function _requireStep(Round storage r, uint256 roundId, Step expected) internal view {
        if (r.step != expected) revert WrongStep(roundId, r.step, expected);
    }

    // ------------------------------------------------------------------ leaving, faults, closing

    /// @dev `who` leaves the round in the current iteration; the mechanism's fallback settles it.
    function _drop(Round storage r, uint256 roundId, address who, DropReason reason) internal {
        Member storage m = r.members[who];
        uint32 k = r.iteration;
        m.droppedBeforePlusOne = k + 1;
        r.active -= 1;
        emit Dropped(roundId, k, who, reason);
    }

    /// @dev Names `who` at fault and moves what it forfeits (a participant: its whole balance; the
    ///      coordinator: its bond, as far as its balance holds it) to the pool shared at the end.
    function _forfeit(Round storage r, uint256 roundId, address who, Fault fault) internal {
        uint256 balance = r.balances[who];
        uint256 amount = who == r.coordinator && uint8(fault) >= uint8(Fault.CoordinatorLate)
            ? (balance < r.bond ? balance : r.bond) : balance;
        if (who != r.coordinator) r.members[who].culprit = true;
        if (amount != 0) {
            r.balances[who] = balance - amount;
            r.forfeited += amount;
        }
        emit Blamed(roundId, who, amount, fault);
    }

    /// @dev Shares the forfeited pool equally among the participants `eligible` marks (all that
    ///      are not culprits when none is marked), the remainder to the first; with nobody to share
    ///      it (every participant a culprit), it goes to the grid account, so no token stays locked.
    function _share(Round storage r, uint256 roundId, bool[] memory eligible) internal {
        uint256 pool = r.forfeited;
        if (pool == 0) return;
        address[] storage parts = r.participants;
        uint256 count;
        for (uint256 i = 0; i < parts.length; ++i) {
            if (eligible[i]) ++count;
        }
        if (count == 0) {
            for (uint256 i = 0; i < parts.length; ++i) {
                eligible[i] = !r.members[parts[i]].culprit;
                if (eligible[i]) ++count;
            }
        }
        r.forfeited = 0;
        if (count == 0) {
            r.balances[r.gridAccount] += pool;
            emit Compensated(roundId, r.gridAccount, pool);
            return;
        }
        uint256 each = pool / count;
        uint256 rest = pool - each * count;
        for (uint256 i = 0; i < parts.length; ++i) {
            if (!eligible[i]) continue;
            uint256 amount = each + rest;
            rest = 0;
            r.balances[parts[i]] += amount;
            emit Compensated(roundId, parts[i], amount);
        }
    }

    /// @dev Closes the round without trading: every deposit becomes withdrawable in full, less
    ///      what culprits forfeited, which is shared among the others.
    function _close(Round storage r, uint256 roundId, CloseReason reason) internal {
        _setPhase(r, roundId, Phase.Closed);
        emit Closed(roundId, r.iteration, reason, msg.sender);
        _share(r, roundId, new bool[](r.participants.length));
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

    // ------------------------------------------------------------------ data

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
    ///      sign-extended int64, and its first `bounded` values at most `bound` in magnitude
    ///      (`RevealOutOfRange`). One pass, no per-element decoding.
    function _valuesHash(int256[] calldata v, address who, uint256 bounded, uint256 bound) internal pure returns (bytes32 h) {
        uint256 bad = type(uint256).max;
        assembly ("memory-safe") {
            let p := mload(0x40)
            let n := mul(v.length, 32)
            calldatacopy(p, v.offset, n)
            for { let i := 0 } lt(i, n) { i := add(i, 32) } {
                let x := mload(add(p, i))
                let magnitude := x
                if slt(x, 0) { magnitude := sub(0, x) }
                if or(iszero(eq(signextend(7, x), x)), and(lt(i, mul(bounded, 32)), gt(magnitude, bound))) {
                    bad := div(i, 32)
                    break
                }
            }
            h := keccak256(p, n)
        }
        if (bad != type(uint256).max) revert RevealOutOfRange(who, bad);
    }

    /// @dev keccak256 of 32-byte words (abi.encodePacked(int256[])), unchecked: for values whose
    ///      hash is compared with that of values checked when they were revealed.
    function _wordsHash(int256[] calldata v) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            let n := mul(v.length, 32)
            calldatacopy(p, v.offset, n)
            h := keccak256(p, n)
        }
    }

    /// @dev The largest |value| a participant may encrypt in a slot so that the sum of the round's
    ///      participants' values cannot wrap B bits: (2^(B-1) - 1) / participants.
    function _slotBound(Round storage r) internal view returns (uint256) {
        if (r.keyData == address(0)) return type(uint256).max;
        return ((uint256(1) << (r.slotBits - 1)) - 1) / r.participantCount;
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

    /// @dev A challenge has started and is not yet void (a challenger cannot hold the round by
    ///      starting one and walking away: it lapses one challenge window after its start).
    function _challengeInProgress(Round storage r) internal view returns (bool) {
        return r.challengeKeyPlusOne != 0 && block.number <= r.challengeDeadline;
    }

    /// @dev Whether the member submitted in the current attempt.
    function _submittedNow(Round storage r, Member storage m) internal view returns (bool) {
        return m.submittedIterationPlusOne == r.iteration + 1 && m.submittedAttempt == r.attempt;
    }
}
