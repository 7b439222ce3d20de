// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CloseReason, Fault, Member, Phase, Round, SettleContext, Standing} from "./RoundTypes.sol";
import {RoundStorage} from "./RoundStorage.sol";

/// @title RoundSettlement
/// @notice The end of PrivateRounds' rounds: each participant's reveal against its commitment,
///         then the settlement: the reveals of those that stayed against the decrypted sums (or,
///         after a blame step, who cleared itself), the rule asked for the payments, the payments
///         booked and the forfeits shared. A module that PrivateRounds runs by DELEGATECALL on its
///         own storage, with the caller's calldata unchanged (no re-encoding of the reveals); this
///         keeps PrivateRounds' code under the EIP-170 limit. Called directly, it sees no rounds.
contract RoundSettlement is RoundStorage {
    /// @notice PrivateRounds.reveal.
    /// @param roundId the round.
    /// @param values the caller's reveal.
    /// @param salt its commitment's salt.
    /// @param ciphertextHash keccak256 of the ciphertext submitted with that commitment.
    function reveal(uint256 roundId, int256[] calldata values, bytes32 salt, bytes32 ciphertextHash) external {
        Round storage r = _round(roundId);
        _requirePhase(r, roundId, Phase.Concluded);
        uint64 from = r.challengeUntil;
        uint64 until = r.revealUntil;
        if (block.number > until || r.blameUntil != 0) revert DeadlinePassed(until);
        if (block.number <= from) revert ChallengeWindowOpen(from);
        if (_challengeInProgress(r)) revert ChallengeInProgress(roundId, r.challengeKeyPlusOne - 1);
        Member storage m = r.members[msg.sender];
        if (m.position == 0) revert NotRegistered(msg.sender);
        if (m.revealed) revert AlreadyRevealed(msg.sender);
        uint32 submitted = m.submittedIterationPlusOne;
        if (submitted == 0) revert NothingToReveal(msg.sender);
        uint256 len = r.rule.revealLength(r.slots, r.pairLanes, r.participantCount);
        if (values.length != len) revert RevealLength(msg.sender, values.length, len);
        bytes32 h = _valuesHash(values, msg.sender, r.keyData != address(0) ? r.slots : 0, _slotBound(r));
        bytes32 commitment = keccak256(abi.encode(roundId, submitted - 1, msg.sender, h, salt));
        if (bytes24(keccak256(abi.encodePacked(ciphertextHash, commitment))) != m.submissionHash) {
            revert CommitmentMismatch(msg.sender);
        }
        m.revealed = true;
        m.revealHash = keccak256(abi.encodePacked(h, ciphertextHash));
        r.revealed += 1;
        emit Revealed(roundId, msg.sender);
    }

    /// @notice PrivateRounds.settle.
    /// @param roundId the round.
    /// @param values every participant's reveal, registration order, one after the other (zeros
    ///        where its standing is DroppedSilent).
    /// @param ciphertextHashes per participant the ciphertext hash it revealed with.
    function settle(uint256 roundId, int256[] calldata values, bytes32[] calldata ciphertextHashes) external {
        Round storage r = _round(roundId);
        if (r.phase == Phase.Settled) revert AlreadySettled(roundId);
        _requirePhase(r, roundId, Phase.Concluded);
        bool blamed = r.blameUntil != 0;
        _requireRevealsOver(r, roundId, blamed);
        if (!blamed) {
            uint256 withheld = _forfeitWithheld(r, roundId);
            Standing[] memory first = _standings(r, values, ciphertextHashes, false);
            if (r.keyData != address(0) && (withheld != 0 || !_sumsHold(r, values, first))) {
                if (r.windows.challenge == 0) {
                    _close(r, roundId, CloseReason.RevealsDoNotAddUp); // nobody could prove an opening
                    return;
                }
                uint64 until = uint64(block.number) + r.windows.submission;
                r.blameUntil = until;
                r.challengeUntil = until + r.windows.challenge; // the blame openings may be challenged until then
                r.challengeKeyPlusOne = 0; // a challenge of the final decryption is over (void) by now
                emit BlameStarted(roundId, r.iteration, until);
                return;
            }
            _pay(r, roundId, values, first);
            return;
        }
        _judgeBlame(r, roundId);
        _pay(r, roundId, values, _standings(r, values, ciphertextHashes, true));
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
            _valuesHash(values[i * len:(i + 1) * len], who, 0, type(uint256).max);
            if (r.members[who].droppedBeforePlusOne != 0) standing[i] = Standing.DroppedRevealed;
        }
        return r.rule.settle(_context(r, roundId, len, standing), values);
    }

    /// @dev Reveals are over: after the reveal deadline, or once every active participant revealed
    ///      (no challenge in progress); after a blame step, once its openings' challenge window
    ///      closed (a challenge still in progress has one more window, then it is void).
    function _requireRevealsOver(Round storage r, uint256 roundId, bool blamed) private view {
        uint64 until = r.challengeUntil;
        bool challenged = _challengeInProgress(r);
        if (blamed || block.number <= r.revealUntil) {
            if (block.number <= until) revert ChallengeWindowOpen(until);
            if (challenged) revert ChallengeInProgress(roundId, r.challengeKeyPlusOne - 1);
        }
        if (!blamed && block.number <= r.revealUntil && _activeUnrevealed(r) != 0) revert RevealWindowOpen(r.revealUntil);
    }

    function _activeUnrevealed(Round storage r) private view returns (uint256 count) {
        address[] storage parts = r.participants;
        for (uint256 i = 0; i < parts.length; ++i) {
            Member storage m = r.members[parts[i]];
            if (m.droppedBeforePlusOne == 0 && !m.revealed) ++count;
        }
    }

    /// @dev Every participant that stayed to the end and did not reveal forfeits its deposit.
    function _forfeitWithheld(Round storage r, uint256 roundId) private returns (uint256 count) {
        address[] storage parts = r.participants;
        for (uint256 i = 0; i < parts.length; ++i) {
            Member storage m = r.members[parts[i]];
            if (m.droppedBeforePlusOne == 0 && !m.revealed && !m.culprit) {
                _forfeit(r, roundId, parts[i], Fault.WithheldReveal);
                ++count;
            }
        }
    }

    /// @dev After a blame step: those that stayed, revealed and did not clear themselves are settled
    ///      by the fallback; the only one of them, when nobody withheld a reveal, is proven to have
    ///      encrypted other values than it revealed and forfeits. If everyone cleared itself, the
    ///      decrypted sums were false: the coordinator forfeits its bond.
    function _judgeBlame(Round storage r, uint256 roundId) private {
        address[] storage parts = r.participants;
        uint256 unopened;
        uint256 withheld;
        uint256 culprits;
        address last;
        for (uint256 i = 0; i < parts.length; ++i) {
            Member storage m = r.members[parts[i]];
            if (m.droppedBeforePlusOne != 0) continue;
            if (!m.revealed) ++withheld;
            else if (m.culprit) ++culprits;
            else if (!m.cleared) {
                ++unopened;
                last = parts[i];
            }
        }
        if (unopened == 1 && withheld == 0 && culprits == 0) {
            _forfeit(r, roundId, last, Fault.SumCheated);
        } else if (unopened != 0) {
            for (uint256 i = 0; i < parts.length; ++i) {
                Member storage m = r.members[parts[i]];
                if (m.droppedBeforePlusOne == 0 && m.revealed && !m.culprit && !m.cleared) {
                    emit Blamed(roundId, parts[i], 0, Fault.NotOpened);
                }
            }
        } else if (withheld == 0 && culprits == 0) {
            _forfeit(r, roundId, r.coordinator, Fault.CoordinatorFalseSums);
        }
    }

    /// @dev Each participant's standing, its reveal checked against the one it revealed (a void one
    ///      must be zeros): those that stayed and revealed are Final (after a blame step: those that
    ///      cleared themselves), dropped ones that revealed DroppedRevealed, the rest DroppedSilent. A
    ///      culprit's reveal never counts: it forfeited its deposit, and a fallback that billed it
    ///      could not be paid.
    function _standings(Round storage r, int256[] calldata values, bytes32[] calldata ctHashes, bool blamed)
        private
        view
        returns (Standing[] memory standing)
    {
        uint256 count = r.participantCount;
        uint256 len = r.rule.revealLength(r.slots, r.pairLanes, count);
        if (ctHashes.length != count) revert RevealCount(ctHashes.length, count);
        if (values.length != count * len) revert RevealLength(address(0), values.length, count * len);
        standing = new Standing[](count);
        for (uint256 i = 0; i < count; ++i) {
            address who = r.participants[i];
            Member storage m = r.members[who];
            bool stayed = m.droppedBeforePlusOne == 0;
            bool counted = m.revealed && !m.culprit && !(stayed && blamed && !m.cleared); // a culprit's reveal never counts
            standing[i] = !counted ? Standing.DroppedSilent : (stayed ? Standing.Final : Standing.DroppedRevealed);
            bytes32 h = _wordsHash(values[i * len:(i + 1) * len]);
            if (counted ? keccak256(abi.encodePacked(h, ctHashes[i])) != m.revealHash : h != _zeroHash(len)) {
                revert RevealMismatch(who);
            }
        }
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

    /// @dev Whether the first `slots` values of the Final reveals add up to the decrypted sums.
    function _sumsHold(Round storage r, int256[] calldata values, Standing[] memory standing) private view returns (bool) {
        uint256 S = r.slots;
        int64[] storage sums = r.finalSums;
        uint256 count = standing.length;
        uint256 len = values.length / count;
        for (uint256 t = 0; t < S; ++t) {
            int256 total = 0;
            for (uint256 i = 0; i < count; ++i) {
                if (standing[i] == Standing.Final) total += values[i * len + t];
            }
            if (total != sums[t]) return false;
        }
        return true;
    }

    /// @dev Asks the rule for the payments of the checked reveals, checks and books them, and
    ///      shares what culprits forfeited among those settled as Final.
    function _pay(Round storage r, uint256 roundId, int256[] calldata values, Standing[] memory standing) private {
        uint256 len = r.rule.revealLength(r.slots, r.pairLanes, r.participantCount);
        (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts, int256[][] memory bills) =
            r.rule.settle(_context(r, roundId, len, standing), values);
        while (_voidOverdrawn(r, roundId, amounts, standing)) { // each pass voids at least one: it ends
            (amounts, payees, payeeAmounts, bills) = r.rule.settle(_context(r, roundId, len, standing), _zeroed(values, standing, len));
        }
        _checkSettlement(r, amounts, payees, payeeAmounts, bills);
        _setPhase(r, roundId, Phase.Settled);
        _bookAll(r, roundId, amounts, payees, payeeAmounts, bills);
        bool[] memory finals = new bool[](standing.length);
        for (uint256 i = 0; i < standing.length; ++i) {
            finals[i] = standing[i] == Standing.Final && !r.members[r.participants[i]].culprit;
        }
        _share(r, roundId, finals);
        emit Settled(roundId, r.iteration);
    }

    /// @dev A participant billed more than all it holds cannot pay: it forfeits what it holds
    ///      (`Overdrawn`) and is settled without its reveal (DroppedSilent), so that it cannot stop
    ///      the settlement of the others; true if there was one.
    function _voidOverdrawn(Round storage r, uint256 roundId, int256[] memory amounts, Standing[] memory standing)
        private
        returns (bool any)
    {
        address[] storage parts = r.participants;
        for (uint256 i = 0; i < amounts.length && i < parts.length; ++i) {
            if (standing[i] == Standing.DroppedSilent || amounts[i] <= 0 || uint256(amounts[i]) <= r.balances[parts[i]]) {
                continue;
            }
            _forfeit(r, roundId, parts[i], Fault.Overdrawn);
            standing[i] = Standing.DroppedSilent;
            any = true;
        }
    }

    /// @dev The reveals with zeros for every DroppedSilent participant.
    function _zeroed(int256[] calldata values, Standing[] memory standing, uint256 len) private pure returns (int256[] memory out) {
        out = values;
        for (uint256 i = 0; i < standing.length; ++i) {
            if (standing[i] != Standing.DroppedSilent) continue;
            for (uint256 j = i * len; j < (i + 1) * len; ++j) {
                out[j] = 0;
            }
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
