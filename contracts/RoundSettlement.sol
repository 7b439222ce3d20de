// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Member, Phase, Round, SettleContext, Standing} from "./RoundTypes.sol";
import {RoundStorage} from "./RoundStorage.sol";

/// @title RoundSettlement
/// @notice The settlement of PrivateRounds' rounds: reveals checked against commitments and
///         decrypted sums, the rule asked for the payments, the payments booked. A module that
///         PrivateRounds creates and runs by DELEGATECALL on its own storage, with the caller's
///         calldata unchanged (no re-encoding of the reveals); this keeps PrivateRounds' code
///         under the EIP-170 limit. Called directly, it sees no rounds (UnknownRound).
contract RoundSettlement is RoundStorage {
    /// @notice Settles a concluded round (PrivateRounds.settle, same parameters).
    /// @param roundId the round.
    /// @param values every participant's reveal, registration order, one after the other.
    /// @param salts the salt of each participant's commitment (zero: a dropped participant without a reveal).
    /// @param ciphertextHashes keccak256 of each participant's ciphertext of that commitment.
    function settle(
        uint256 roundId,
        int256[] calldata values,
        bytes32[] calldata salts,
        bytes32[] calldata ciphertextHashes
    ) external {
        Round storage r = _round(roundId);
        _requireSettleable(r, roundId);
        _pay(r, roundId, values, _checkReveals(r, roundId, values, salts, ciphertextHashes));
        emit Settled(roundId, r.iteration);
    }

    /// @notice The settlement of given reveals without touching state (PrivateRounds.quote runs it
    ///         in a static call).
    /// @param roundId the round.
    /// @param values the reveals, participant-major.
    /// @return amounts per participant, positive = paid.
    /// @return payees the other accounts paid or charged.
    /// @return payeeAmounts their amounts.
    /// @return bills per participant its bill items (or none).
    function quoteByDelegate(uint256 roundId, int256[] calldata values)
        external
        view
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts, int256[][] memory bills)
    {
        Round storage r = _round(roundId);
        if (r.phase == Phase.Registering) revert WrongPhase(roundId, r.phase, Phase.Iterating); // no prices yet
        uint256 count = r.participantCount;
        uint256 len = r.rule.revealLength(r.slots, r.pairLanes, count);
        if (values.length != count * len) revert RevealLength(address(0), values.length, count * len);
        Standing[] memory standing = new Standing[](count);
        for (uint256 i = 0; i < count; ++i) {
            address who = r.participants[i];
            _valuesHash(values[i * len:(i + 1) * len], who);
            if (r.members[who].droppedBeforePlusOne != 0) standing[i] = Standing.DroppedRevealed;
        }
        return r.rule.settle(_context(r, roundId, len, standing), values);
    }

    /// @dev Concluded and its challenge window closed; a challenge still in progress has one more
    ///      window to finish, after which it is void (a challenger cannot hold the round by starting
    ///      one and walking away).
    function _requireSettleable(Round storage r, uint256 roundId) private view {
        if (r.phase == Phase.Settled) revert AlreadySettled(roundId);
        _requirePhase(r, roundId, Phase.Concluded);
        uint64 until = r.challengeUntil;
        if (block.number <= until && r.windows.challenge != 0) revert ChallengeWindowOpen(until);
        uint32 challenged = r.challengeIterationPlusOne;
        if (challenged != 0 && block.number <= until + r.windows.challenge) {
            revert ChallengeInProgress(roundId, challenged - 1);
        }
    }

    /// @dev Asks the rule for the payments of the checked reveals, checks them and books them.
    function _pay(Round storage r, uint256 roundId, int256[] calldata values, Standing[] memory standing) private {
        uint256 len = r.rule.revealLength(r.slots, r.pairLanes, r.participantCount);
        (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts, int256[][] memory bills) =
            r.rule.settle(_context(r, roundId, len, standing), values);
        _checkSettlement(r, amounts, payees, payeeAmounts, bills);
        _setPhase(r, roundId, Phase.Settled);
        _bookAll(r, roundId, amounts, payees, payeeAmounts, bills);
    }

    /// @dev Every reveal has the rule's length and stays within int64. One of a participant that
    ///      stayed to the end opens its final commitment; one of a dropped participant opens its
    ///      last accepted commitment, or is all zeros with a zero salt (no reveal). With a key, the
    ///      first `slots` values of those that stayed add up to the decrypted sums. Returns each
    ///      participant's standing.
    function _checkReveals(
        Round storage r,
        uint256 roundId,
        int256[] calldata values,
        bytes32[] calldata salts,
        bytes32[] calldata ciphertextHashes
    ) private view returns (Standing[] memory standing) {
        uint256 count = r.participantCount;
        uint256 len = r.rule.revealLength(r.slots, r.pairLanes, count);
        if (salts.length != count) revert RevealCount(salts.length, count);
        if (ciphertextHashes.length != count) revert RevealCount(ciphertextHashes.length, count);
        if (values.length != count * len) revert RevealLength(address(0), values.length, count * len);
        standing = new Standing[](count);
        for (uint256 i = 0; i < count; ++i) {
            standing[i] = _checkOne(r, roundId, r.participants[i], values[i * len:(i + 1) * len], salts[i], ciphertextHashes[i]);
        }
        if (r.keyData != address(0)) _checkSums(r, values, len, standing);
    }

    /// @dev One participant's reveal against its commitment; its standing.
    function _checkOne(Round storage r, uint256 roundId, address who, int256[] calldata v, bytes32 salt, bytes32 ctHash)
        private
        view
        returns (Standing standing)
    {
        Member storage m = r.members[who];
        bytes32 h = _valuesHash(v, who);
        uint32 submitted = m.submittedIterationPlusOne;
        if (m.droppedBeforePlusOne != 0) {
            if (salt == bytes32(0) || submitted == 0) {
                if (h != _zeroHash(v.length)) revert CommitmentMismatch(who);
                return Standing.DroppedSilent;
            }
            standing = Standing.DroppedRevealed;
        }
        bytes32 commitment = keccak256(abi.encode(roundId, submitted - 1, who, h, salt));
        if (bytes26(keccak256(abi.encodePacked(ctHash, commitment))) != m.submissionHash) revert CommitmentMismatch(who);
    }

    /// @dev keccak256 of `len` zero words.
    function _zeroHash(uint256 len) private pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            let n := mul(len, 32)
            calldatacopy(p, calldatasize(), n) // zeros
            h := keccak256(p, n)
        }
    }

    /// @dev keccak256 of a reveal's 32-byte words (abi.encodePacked(int256[])), each checked to be a
    ///      sign-extended int64 (`RevealOutOfRange`). One pass, no per-element decoding.
    function _valuesHash(int256[] calldata v, address who) private pure returns (bytes32 h) {
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

    /// @dev The first `slots` values of the reveals of those that stayed add up to the decrypted sums.
    function _checkSums(Round storage r, int256[] calldata values, uint256 len, Standing[] memory standing)
        private
        view
    {
        uint256 S = r.slots;
        int64[] storage sums = r.finalSums;
        uint256 count = values.length / len;
        for (uint256 t = 0; t < S; ++t) {
            int256 total;
            for (uint256 i = 0; i < count; ++i) {
                if (standing[i] == Standing.Final) total += values[i * len + t];
            }
            int256 decrypted = sums[t];
            if (total != decrypted) revert RevealedSumMismatch(t, total, decrypted);
        }
    }

    /// @dev The round as its rule sees it at settlement.
    function _context(Round storage r, uint256 roundId, uint256 len, Standing[] memory standing)
        private
        view
        returns (SettleContext memory ctx)
    {
        address[] memory parts = r.participants;
        uint256[] memory index = new uint256[](parts.length);
        for (uint256 i = 0; i < parts.length; ++i) {
            index[i] = r.members[parts[i]].memberIndexPlusOne - 1;
        }
        ctx = SettleContext({
            roundId: roundId,
            coordinator: r.coordinator,
            gridAccount: r.gridAccount,
            prices: r.prices,
            priceFloor: r.priceFloor,
            priceCap: r.priceCap,
            slots: r.slots,
            pairLanes: r.pairLanes,
            revealLength: len,
            participants: parts,
            standing: standing,
            memberIndex: index,
            terms: _loadData(r.termsData)
        });
    }

    /// @dev The rule's answer has one amount (and, if any, one bill) per participant and sums to zero.
    function _checkSettlement(
        Round storage r,
        int256[] memory amounts,
        address[] memory payees,
        int256[] memory payeeAmounts,
        int256[][] memory bills
    ) private view {
        uint256 count = r.participantCount;
        if (amounts.length != count || payeeAmounts.length != payees.length || (bills.length != 0 && bills.length != count)) {
            revert SettlementShape(count, amounts.length, payees.length, payeeAmounts.length, bills.length);
        }
        int256 total;
        for (uint256 i = 0; i < count; ++i) {
            total += amounts[i];
        }
        for (uint256 i = 0; i < payeeAmounts.length; ++i) {
            total += payeeAmounts[i];
        }
        if (total != 0) revert SettlementImbalance(total);
    }

    /// @dev Books the settlement: each participant's bill (if the rule gives bills) and payment,
    ///      then the payees' payments.
    function _bookAll(
        Round storage r,
        uint256 roundId,
        int256[] memory amounts,
        address[] memory payees,
        int256[] memory payeeAmounts,
        int256[][] memory bills
    ) private {
        uint32 k = r.iteration;
        address[] storage parts = r.participants;
        for (uint256 i = 0; i < amounts.length; ++i) {
            address who = parts[i];
            if (bills.length != 0) emit Bill(roundId, who, bills[i]);
            _book(r, roundId, k, who, amounts[i]);
        }
        for (uint256 i = 0; i < payees.length; ++i) {
            _book(r, roundId, k, payees[i], payeeAmounts[i]);
        }
    }

    function _book(Round storage r, uint256 roundId, uint32 k, address account, int256 paid) private {
        _update(r, account, paid);
        emit Payment(roundId, k, account, paid);
    }
}
