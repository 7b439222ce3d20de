// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CloseReason, Member, Phase, Round, SettleContext, Standing} from "./RoundTypes.sol";
import {PaillierMath} from "./PaillierMath.sol";
import {RoundStorage} from "./RoundStorage.sol";
import {Secp256k1} from "./lib/Secp256k1.sol";

/// @title RoundSettlement
/// @notice The settlement of PrivateRounds' rounds: reveals checked against commitments and
///         decrypted sums, the rule asked for the payments, the payments booked. A module that
///         PrivateRounds creates and runs by DELEGATECALL on its own storage, with the caller's
///         calldata unchanged (no re-encoding of the reveals); this keeps PrivateRounds' code
///         under the EIP-170 limit. Called directly, it sees no rounds (UnknownRound).
contract RoundSettlement is RoundStorage {
    uint256 internal constant POINT_BYTES = 33;
    /// @notice The Paillier arithmetic (PrivateRounds').
    PaillierMath public immutable paillier;

    /// @param paillier_ PrivateRounds' PaillierMath.
    constructor(PaillierMath paillier_) {
        paillier = paillier_;
    }

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
        bool blamed = r.blameUntil != 0;
        Standing[] memory standing = _checkReveals(r, roundId, values, salts, ciphertextHashes);
        if (!blamed && r.keyData != address(0)) {
            (bool ok, uint256 t, int256 revealed, int256 decrypted) = _checkSums(r, values, standing);
            if (!ok) {
                // with dropout recovery and checked openings, a blame step finds who encrypted
                // something else than it committed to; else the round ends by cancellation
                if (r.threshold == 0 || r.windows.challenge == 0) revert RevealedSumMismatch(t, revealed, decrypted);
                uint64 until = uint64(block.number) + r.windows.submission;
                r.blameUntil = until;
                r.challengeUntil = until + r.windows.challenge; // the openings may be challenged until then
                emit BlameStarted(roundId, r.iteration, until);
                return;
            }
        }
        if (blamed && !_slash(r, roundId)) return;
        _pay(r, roundId, values, standing);
        emit Settled(roundId, r.iteration);
    }

    /// @notice PrivateRounds.openBlame.
    /// @param roundId the round.
    /// @param values the caller's reveal.
    /// @param salt its commitment's salt.
    /// @param opened its final ciphertext || its decryption || rho.
    /// @param masks its keys, mask point, self mask and pair masks with their proofs.
    function openBlame(uint256 roundId, int256[] calldata values, bytes32 salt, bytes calldata opened, bytes calldata masks)
        external
    {
        Round storage r = _round(roundId);
        Member storage m = _admitBlame(r, roundId, values, salt, opened);
        uint64[] memory mask = _provenMask(r, roundId, m, masks);
        if (!_opensTo(r, roundId, values, opened, mask)) {
            revert BlameOpeningInvalid(msg.sender, 4 + _degree(r.participantCount));
        }
        r.openings[BLAME_KEY + m.position] = keccak256(opened);
        m.cleared = true;
        emit BlameOpened(roundId, msg.sender);
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

    /// @dev The caller may open now (a participant that stayed to the end, once, before the blame
    ///      deadline) and its reveal opens its final commitment.
    function _admitBlame(Round storage r, uint256 roundId, int256[] calldata values, bytes32 salt, bytes calldata opened)
        internal
        view
        returns (Member storage m)
    {
        uint256 L = uint256(r.nWords) * 32;
        if (opened.length != 4 * L) revert OpeningLength(opened.length, 4 * L);
        bytes32 ctHash = keccak256(opened[:2 * L]);
        _requirePhase(r, roundId, Phase.Concluded);
        uint64 until = r.blameUntil;
        if (until == 0) revert NoBlame(roundId);
        if (block.number > until) revert DeadlinePassed(until);
        m = r.members[msg.sender];
        uint32 k = r.iteration;
        if (m.position == 0 || m.droppedBeforePlusOne != 0 || m.submittedIterationPlusOne != k + 1) {
            revert NotInBlame(msg.sender);
        }
        if (m.cleared) revert AlreadyCleared(msg.sender);
        bytes32 commitment = keccak256(abi.encode(roundId, k, msg.sender, _valuesHash(values, msg.sender), salt));
        if (bytes26(keccak256(abi.encodePacked(ctHash, commitment))) != m.submissionHash) {
            revert BlameOpeningInvalid(msg.sender, 0);
        }
    }

    /// @dev What a blame opening's mask checks accumulate: the round's context bytes, the final
    ///      iteration, the mask so far (mod 2^B per slot) and the read offset in `masks`.
    struct MaskSum {
        bytes ctx;
        uint32 k;
        uint256[] total;
        uint256 at;
        bytes key; // a G
    }

    /// @dev The caller's mask of the final iteration from its proven mask points (`masks`: its
    ///      sharing post, then Y_i(k) and its proof against H_k, b G_k and its proof against G_k,
    ///      then for each neighbour active in iteration k, in registration order, Y_j(k), a Y_j(k)
    ///      and its proof; proofs in Secp256k1's 192-byte form).
    function _provenMask(Round storage r, uint256 roundId, Member storage m, bytes calldata masks)
        internal
        view
        returns (uint64[] memory mask)
    {
        MaskSum memory acc = MaskSum(abi.encodePacked(address(this), roundId, block.chainid), r.iteration,
            new uint256[](r.slots), 0, "");
        _ownMask(r, m, acc, masks);
        uint256[] memory next = _neighbours(m.position - 1, r.participantCount);
        for (uint256 q = 0; q < next.length; ++q) {
            if (!_pairMask(r, r.participants[next[q]], acc, masks)) revert BlameOpeningInvalid(msg.sender, 4 + q);
        }
        if (masks.length != acc.at) revert MasksLength(masks.length, acc.at);
        mask = new uint64[](acc.total.length);
        for (uint256 t = 0; t < mask.length; ++t) {
            mask[t] = uint64(acc.total[t]);
        }
    }

    /// @dev Checks the caller's sharing post (its commitments give a G and b G), its mask point
    ///      Y_i(k) and its self mask b G_k, and adds the self mask; sets the offset of the pair masks.
    function _ownMask(Round storage r, Member storage m, MaskSum memory acc, bytes calldata masks) internal view {
        uint256 len = _material(r, m, masks);
        acc.key = masks[POINT_BYTES:2 * POINT_BYTES]; // a G
        bytes calldata own = masks[len:len + 450]; // Y_i(k), its proof, b G_k, its proof
        if (
            bytes16(keccak256(own[:33])) != _pointHash(m, acc.k)
                || !Secp256k1.verifyDleq(acc.key, _base(acc.ctx, "/pair/", acc.k), own[:33], own[33:225])
        ) revert BlameOpeningInvalid(msg.sender, 2);
        uint256 b = POINT_BYTES * (1 + uint256(r.threshold)); // b G
        if (!Secp256k1.verifyDleq(masks[b:b + POINT_BYTES], _base(acc.ctx, "/self/", acc.k), own[225:258], own[258:])) {
            revert BlameOpeningInvalid(msg.sender, 3);
        }
        _addStream(acc.total, _seed(acc.ctx, own[225:258]), acc.k, r.slotBits, true);
        acc.at = len + 450;
    }

    /// @dev The length of the caller's sharing post at the start of `masks`, checked against its hash.
    function _material(Round storage r, Member storage m, bytes calldata masks) internal view returns (uint256 len) {
        len = POINT_BYTES * (1 + 2 * uint256(r.threshold)) + 64 * _degree(r.participantCount);
        if (masks.length < len + 450) revert MasksLength(masks.length, len + 450);
        if (bytes16(keccak256(masks[:len])) != m.materialHash) revert BlameOpeningInvalid(msg.sender, 1);
    }

    /// @dev The pair mask with neighbour `other` if it was in iteration k (next in `masks`: Y_j(k)
    ///      || a Y_j(k) || its proof against a G), added to the sum; false if it does not hold.
    function _pairMask(Round storage r, address other, MaskSum memory acc, bytes calldata masks)
        internal
        view
        returns (bool)
    {
        Member storage j = r.members[other];
        if (!j.shared || (j.droppedBeforePlusOne != 0 && j.droppedBeforePlusOne <= acc.k)) return true; // not in k
        uint256 at = acc.at;
        if (masks.length < at + 258) revert MasksLength(masks.length, at + 258);
        bytes calldata pair = masks[at:at + 258];
        if (bytes16(keccak256(pair[:33])) != _pointHash(j, acc.k)) return false;
        if (!Secp256k1.verifyDleq(acc.key, pair[:33], pair[33:66], pair[66:])) return false;
        _addStream(acc.total, _seed(acc.ctx, pair[33:66]), acc.k, r.slotBits, msg.sender < other);
        acc.at = at + 258;
        return true;
    }

    /// @dev Whether the plaintext of `opened` (ciphertext || m || rho), less `mask`, decodes to the
    ///      reveal's first `slots` values.
    function _opensTo(Round storage r, uint256 roundId, int256[] calldata values, bytes calldata opened, uint64[] memory mask)
        internal
        view
        returns (bool)
    {
        PaillierMath.Layout memory layout = PaillierMath.Layout(r.slots, r.slotBits, r.slotWidth);
        uint256 L = opened.length / 4;
        (PaillierMath.Opening outcome, int64[] memory sums) = paillier.open(r.keyData, opened[2 * L:], layout, mask);
        if (outcome == PaillierMath.Opening.PlaintextOutOfRange) revert PlaintextOutOfRange(roundId, r.iteration);
        if (outcome == PaillierMath.Opening.OpeningNotCanonical) revert OpeningNotCanonical(roundId, r.iteration);
        for (uint256 t = 0; t < sums.length; ++t) {
            if (int256(sums[t]) != values[t]) return false;
        }
        return true;
    }

    /// @dev The hash kept of a member's mask point of iteration k (posted one iteration ahead).
    function _pointHash(Member storage m, uint32 k) internal view returns (bytes16) {
        return m.submittedIterationPlusOne == k + 1 ? m.pointHash : m.nextPointHash;
    }

    /// @dev H_k ("/pair/") or G_k ("/self/") of the round (secagg.iteration_points).
    function _base(bytes memory ctx, bytes memory kind, uint32 k) internal view returns (bytes memory) {
        return Secp256k1.hashToPoint(abi.encodePacked(ctx, kind, uint64(k)));
    }

    /// @dev The seed a mask is expanded from (secagg.mask_seed).
    function _seed(bytes memory ctx, bytes calldata point) internal pure returns (bytes32) {
        return sha256(abi.encodePacked("gridshare/secagg/mask/", ctx, point));
    }

    /// @dev Adds (or subtracts) to `total`, mod 2^bits, the mask expanded from `seed` for iteration
    ///      k: keccak256(seed || k || counter) blocks cut into ceil(bits / 8)-byte values (masks.stream).
    function _addStream(uint256[] memory total, bytes32 seed, uint32 k, uint256 bits, bool plus) internal pure {
        uint256 width = (bits + 7) / 8;
        uint256 blocks = (total.length * width + 31) / 32;
        bytes memory raw = new bytes(blocks * 32 + 32);
        for (uint256 c = 0; c < blocks; ++c) {
            bytes32 b = keccak256(abi.encodePacked(seed, uint64(k), uint32(c)));
            assembly ("memory-safe") {
                mstore(add(add(raw, 32), mul(c, 32)), b)
            }
        }
        uint256 modulus = (uint256(1) << bits) - 1;
        for (uint256 t = 0; t < total.length; ++t) {
            uint256 v;
            assembly ("memory-safe") {
                v := shr(mul(sub(32, width), 8), mload(add(add(raw, 32), mul(t, width))))
            }
            v &= modulus;
            total[t] = (plus ? total[t] + v : total[t] + (modulus + 1) - v) & modulus;
        }
    }

    /// @dev Neighbours per participant among `n` (secagg.degree_for).
    function _degree(uint256 n) internal pure returns (uint256) {
        uint256 e = 0;
        while ((uint256(1) << e) < (n < 2 ? 2 : n)) ++e;
        uint256 sparse = 2 * e + 2;
        return n - 1 <= sparse ? n - 1 : sparse;
    }

    /// @dev The neighbours of position `p` (0-based) among `n`, ascending (secagg.neighbours).
    function _neighbours(uint256 p, uint256 n) internal pure returns (uint256[] memory out) {
        uint256 d = _degree(n);
        out = new uint256[](d);
        if (d == n - 1) {
            for (uint256 q = 0; q < n - 1; ++q) {
                out[q] = q < p ? q : q + 1;
            }
            return out;
        }
        uint256 half = d / 2;
        for (uint256 i = 0; i < half; ++i) {
            out[2 * i] = (p + i + 1) % n;
            out[2 * i + 1] = (p + n - i - 1) % n;
        }
        for (uint256 i = 1; i < d; ++i) { // insertion sort (d ~ 2 log2 n)
            uint256 v = out[i];
            uint256 j = i;
            for (; j > 0 && out[j - 1] > v; --j) {
                out[j] = out[j - 1];
            }
            out[j] = v;
        }
    }

    /// @dev Concluded and its challenge window closed; a challenge still in progress has one more
    ///      window to finish, after which it is void (a challenger cannot hold the round by starting
    ///      one and walking away).
    function _requireSettleable(Round storage r, uint256 roundId) private view {
        if (r.phase == Phase.Settled) revert AlreadySettled(roundId);
        _requirePhase(r, roundId, Phase.Concluded);
        uint64 until = r.challengeUntil;
        if (block.number <= until && (r.windows.challenge != 0 || r.blameUntil != 0)) revert ChallengeWindowOpen(until);
        uint32 challenged = r.challengeIterationPlusOne;
        if (challenged != 0 && block.number <= until + r.windows.challenge) {
            revert ChallengeInProgress(roundId, challenged - 1);
        }
    }

    /// @dev After a blame step: every participant that stayed to the end and did not clear itself
    ///      is slashed, its whole balance shared equally among those that did (the remainder to the
    ///      first); with nobody to blame, the coordinator is named (its corrections were wrong). If
    ///      nobody cleared itself the round closes instead (false).
    function _slash(Round storage r, uint256 roundId) private returns (bool settles) {
        address[] storage parts = r.participants;
        uint256 count = parts.length;
        uint256 cleared;
        for (uint256 i = 0; i < count; ++i) {
            if (r.members[parts[i]].cleared) ++cleared;
        }
        if (cleared == 0) {
            _close(r, roundId, CloseReason.BlameUnresolved);
            return false;
        }
        uint256 slashed;
        uint256 culprits;
        for (uint256 i = 0; i < count; ++i) {
            address who = parts[i];
            if (!_culprit(r.members[who])) continue;
            uint256 amount = r.balances[who];
            if (amount != 0) _update(r, who, int256(amount));
            slashed += amount;
            ++culprits;
            emit Blamed(roundId, who, amount);
        }
        if (culprits == 0) emit Blamed(roundId, r.coordinator, 0);
        uint256 each = slashed / cleared;
        uint256 rest = slashed - each * cleared;
        for (uint256 i = 0; i < count && slashed != 0; ++i) {
            address who = parts[i];
            if (!r.members[who].cleared) continue;
            _update(r, who, -int256(each + rest));
            rest = 0;
        }
        return true;
    }

    /// @dev In a blame step: stayed to the end and did not clear itself.
    function _culprit(Member storage m) private view returns (bool) {
        return m.droppedBeforePlusOne == 0 && !m.cleared;
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
        if (r.blameUntil != 0 && _culprit(m)) { // its reveal is void: settled as dropped, without one
            if (salt != bytes32(0) || h != _zeroHash(v.length)) revert CommitmentMismatch(who);
            return Standing.DroppedSilent;
        }
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

    /// @dev Whether the first `slots` values of the reveals of those that stayed add up to the
    ///      decrypted sums (else the first slot that does not, and both totals).
    function _checkSums(Round storage r, int256[] calldata values, Standing[] memory standing)
        private
        view
        returns (bool ok, uint256 slot, int256 total, int256 decrypted)
    {
        uint256 S = r.slots;
        int64[] storage sums = r.finalSums;
        uint256 count = standing.length;
        uint256 len = values.length / count;
        for (uint256 t = 0; t < S; ++t) {
            total = 0;
            for (uint256 i = 0; i < count; ++i) {
                if (standing[i] == Standing.Final) total += values[i * len + t];
            }
            decrypted = sums[t];
            if (total != decrypted) return (false, t, total, decrypted);
        }
        return (true, 0, 0, 0);
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
