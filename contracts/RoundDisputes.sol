// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fault, Member, Phase, Round, Step} from "./RoundTypes.sol";
import {PaillierMath} from "./PaillierMath.sol";
import {RoundStorage} from "./RoundStorage.sol";
import {Secp256k1} from "./lib/Secp256k1.sol";

/// @title RoundDisputes
/// @notice What PrivateRounds checks of the masks (offchain/privacy/secagg.py): a dispute's
///         openings and accusations, after a decrypted check slot showed that an attempt's masks
///         did not cancel, and a blame step's openings, after the reveals did not add up to the
///         decrypted sums. A module that PrivateRounds runs by DELEGATECALL on its own storage,
///         with the caller's calldata (its functions are PrivateRounds' `openCheck`, `accuse`
///         and `openBlame`, documented there). Called directly, it sees no rounds.
/// @dev Participant i's pair mask with neighbour j in attempt a of iteration k is expanded from
///      the point P = a_i Y_j(k) = a_i a_j H_k, bound to the round and both addresses; i adds it if
///      its address is the lower, else subtracts it. Proofs are Chaum-Pedersen proofs of equal
///      logarithms checked with ecrecover (lib/Secp256k1.sol).
contract RoundDisputes is RoundStorage {
    uint256 internal constant POINT_BYTES = 33;
    uint256 internal constant PROOF_BYTES = 192; // Secp256k1.PROOF_BYTES
    uint256 internal constant OWN_BYTES = POINT_BYTES + PROOF_BYTES; // Y_i(k) || proof
    uint256 internal constant PAIR_BYTES = 2 * POINT_BYTES + PROOF_BYTES; // Y_j(k) || P || proof
    /// @notice The Paillier arithmetic (PrivateRounds').
    PaillierMath public immutable paillier;

    /// @param paillier_ PrivateRounds' PaillierMath.
    constructor(PaillierMath paillier_) {
        paillier = paillier_;
    }

    /// @notice PrivateRounds.openCheck.
    /// @param roundId the round.
    /// @param commitment its submission's commitment.
    /// @param opened its ciphertext || plaintext || rho.
    /// @param checks per active neighbour its pair mask's check-slot value.
    function openCheck(uint256 roundId, bytes32 commitment, bytes calldata opened, uint64[] calldata checks) external {
        Round storage r = _round(roundId);
        Member storage m = _admitCheck(r, roundId, commitment, opened);
        uint64[] memory mask = new uint64[](uint256(r.slots) + 1);
        mask[r.slots] = _checkTotal(r, m, checks);
        (, uint64 check) = _decode(r, roundId, opened[opened.length / 2:], mask);
        if (check != 0) revert CheckOpeningInvalid(msg.sender, 1);
        r.openings[_disputeKey(r.iteration, r.attempt, m.position)] = keccak256(opened);
        m.openedPlusOne = _epoch(r);
        m.checkHash = bytes16(keccak256(abi.encodePacked(checks)));
        r.submissions += 1;
        uint256 L = opened.length / 4;
        emit CheckOpened(roundId, r.iteration, msg.sender, opened[2 * L:3 * L], opened[3 * L:], checks);
    }

    /// @dev The caller may open now (a submitter of the disputed attempt, once, in the openings
    ///      window) and `opened` holds the ciphertext of its submission.
    function _admitCheck(Round storage r, uint256 roundId, bytes32 commitment, bytes calldata opened)
        internal
        view
        returns (Member storage m)
    {
        _requirePhase(r, roundId, Phase.Iterating);
        _requireStep(r, roundId, Step.Disputing);
        uint64 openUntil = r.deadline - r.windows.submission;
        if (block.number > openUntil) revert DeadlinePassed(openUntil);
        m = r.members[msg.sender];
        if (m.position == 0 || m.droppedBeforePlusOne != 0 || !_submittedNow(r, m)) revert NotInDispute(msg.sender);
        if (m.openedPlusOne == _epoch(r)) revert AlreadyOpened(msg.sender);
        uint256 L = uint256(r.nWords) * 32;
        if (opened.length != 4 * L) revert OpeningLength(opened.length, 4 * L);
        if (bytes24(keccak256(abi.encodePacked(keccak256(opened[:2 * L]), commitment))) != m.submissionHash) {
            revert CheckOpeningInvalid(msg.sender, 0);
        }
    }

    /// @dev The caller's check mask from its claimed check values, one per active neighbour, each
    ///      below 2^B: their sum, each added or subtracted as the caller's pair masks are, mod 2^B.
    function _checkTotal(Round storage r, Member storage m, uint64[] calldata checks) internal view returns (uint64) {
        uint256[] memory next = _activeNeighbours(r, m.position - 1);
        if (checks.length != next.length) revert ChecksLength(checks.length, next.length);
        uint256 modulus = uint256(1) << r.slotBits;
        uint256 total;
        for (uint256 q = 0; q < next.length; ++q) {
            uint256 e = checks[q];
            if (e >= modulus) revert CheckOpeningInvalid(msg.sender, 1);
            total = (msg.sender < r.participants[next[q]] ? total + e : total + modulus - e) % modulus;
        }
        return uint64(total);
    }

    /// @notice PrivateRounds.accuse.
    /// @param roundId the round.
    /// @param accused the neighbour whose claim differs.
    /// @param mine the caller's check values.
    /// @param theirs the accused's check values.
    /// @param proof A || Y_i(k) || its proof || Y_j(k) || P || its proof.
    function accuse(uint256 roundId, address accused, uint64[] calldata mine, uint64[] calldata theirs, bytes calldata proof)
        external
    {
        Round storage r = _round(roundId);
        _requirePhase(r, roundId, Phase.Iterating);
        _requireStep(r, roundId, Step.Disputing);
        _requireOnTime(r);
        uint64 claim = _differingClaim(r, accused, mine, theirs);
        if (_provenCheck(r, roundId, accused, proof) != claim) revert AccusationInvalid(msg.sender, 4);
        _forfeit(r, roundId, accused, Fault.FalseCheck);
        emit Accused(roundId, r.iteration, accused, msg.sender);
    }

    /// @dev The caller's claimed check value with `accused`, both having opened in this dispute
    ///      with these claims, which differ there.
    function _differingClaim(Round storage r, address accused, uint64[] calldata mine, uint64[] calldata theirs)
        internal
        view
        returns (uint64)
    {
        Member storage a = r.members[msg.sender];
        Member storage b = r.members[accused];
        uint48 epoch = _epoch(r);
        if (a.openedPlusOne != epoch || a.position == 0) revert NotInDispute(msg.sender);
        if (b.openedPlusOne != epoch || b.position == 0) revert NotInDispute(accused);
        if (b.culprit) revert AlreadyCulprit(accused);
        if (bytes16(keccak256(abi.encodePacked(mine))) != a.checkHash) revert AccusationInvalid(msg.sender, 4);
        if (bytes16(keccak256(abi.encodePacked(theirs))) != b.checkHash) revert AccusationInvalid(msg.sender, 4);
        uint256 q = _indexOf(_activeNeighbours(r, a.position - 1), b.position - 1, msg.sender, accused);
        uint256 qb = _indexOf(_activeNeighbours(r, b.position - 1), a.position - 1, msg.sender, accused);
        if (mine[q] == theirs[qb]) revert NoMismatch(msg.sender, accused);
        return mine[q];
    }

    /// @dev The check value of the caller's pair mask with `other`, proven: its key, its mask point
    ///      a H_k and the pair point a Y_j(k), each against what the chain kept.
    function _provenCheck(Round storage r, uint256 roundId, address other, bytes calldata proof) internal view returns (uint64) {
        if (proof.length != POINT_BYTES + OWN_BYTES + PAIR_BYTES) {
            revert MasksLength(proof.length, POINT_BYTES + OWN_BYTES + PAIR_BYTES);
        }
        Member storage a = r.members[msg.sender];
        MaskSum memory acc =
            MaskSum(_context(roundId), new uint256[](uint256(r.slots) + 1), _index(r), r.iteration, r.slotBits);
        if (bytes16(keccak256(proof[:POINT_BYTES])) != a.keyHash) revert AccusationInvalid(msg.sender, 0);
        if (!_ownPoint(a, proof[:POINT_BYTES], acc.ctx, acc.k, proof[POINT_BYTES:POINT_BYTES + OWN_BYTES])) {
            revert AccusationInvalid(msg.sender, 1);
        }
        if (!_addPair(r, acc, proof[:POINT_BYTES], other, proof[POINT_BYTES + OWN_BYTES:])) {
            revert AccusationInvalid(msg.sender, 2);
        }
        uint256 v = acc.total[r.slots]; // the check slot, added or subtracted as the caller's mask has it
        uint256 modulus = uint256(1) << acc.bits;
        return uint64(msg.sender < other ? v : (modulus - v) % modulus);
    }

    /// @notice PrivateRounds.openBlame.
    /// @param roundId the round.
    /// @param values the caller's reveal.
    /// @param opened its final ciphertext || its decryption || rho.
    /// @param masks its key, mask point and pair masks with their proofs.
    function openBlame(uint256 roundId, int256[] calldata values, bytes calldata opened, bytes calldata masks) external {
        Round storage r = _round(roundId);
        Member storage m = _admitBlame(r, roundId, values, opened);
        uint64[] memory mask = _provenMask(r, roundId, m, masks);
        if (!_opensTo(r, roundId, values, opened[opened.length / 2:], mask)) {
            revert BlameOpeningInvalid(msg.sender, 3 + _degree(r.participantCount));
        }
        r.openings[_blameKey(m.position)] = keccak256(opened);
        m.cleared = true;
        emit BlameOpened(roundId, msg.sender);
    }

    /// @dev The caller may open now (stayed, revealed, no culprit, not cleared, before the blame
    ///      deadline) and `opened` holds the ciphertext of its reveal.
    function _admitBlame(Round storage r, uint256 roundId, int256[] calldata values, bytes calldata opened)
        internal
        view
        returns (Member storage m)
    {
        _requirePhase(r, roundId, Phase.Concluded);
        uint64 until = r.blameUntil;
        if (until == 0) revert NoBlame(roundId);
        if (block.number > until) revert DeadlinePassed(until);
        m = r.members[msg.sender];
        if (m.position == 0 || m.droppedBeforePlusOne != 0 || !m.revealed || m.culprit) revert NotInBlame(msg.sender);
        if (m.cleared) revert AlreadyCleared(msg.sender);
        uint256 L = uint256(r.nWords) * 32;
        if (opened.length != 4 * L) revert OpeningLength(opened.length, 4 * L);
        bytes32 h = _wordsHash(values);
        if (keccak256(abi.encodePacked(h, keccak256(opened[:2 * L]))) != m.revealHash) revert BlameOpeningInvalid(msg.sender, 0);
    }

    /// @dev Whether the plaintext (m || rho), less `mask`, decodes to the reveal's first `slots`
    ///      values and a zero check slot.
    function _opensTo(Round storage r, uint256 roundId, int256[] calldata values, bytes calldata mRho, uint64[] memory mask)
        internal
        view
        returns (bool)
    {
        (int64[] memory sums, uint64 check) = _decode(r, roundId, mRho, mask);
        if (check != 0) return false;
        for (uint256 t = 0; t < sums.length; ++t) {
            if (int256(sums[t]) != values[t]) return false;
        }
        return true;
    }

    // ------------------------------------------------------------------ masks

    /// @dev What a blame opening's mask checks accumulate.
    struct MaskSum {
        bytes ctx;
        uint256[] total; // per slot (the check slot last), mod 2^B
        uint256 index; // the stream index of the final attempt
        uint32 k;
        uint8 bits;
    }

    /// @dev The caller's mask of the final attempt from its proven pair points (`masks`: its key A,
    ///      Y_i(k) and its proof against H_k, then for each active neighbour in registration order
    ///      Y_j(k), P = a_i Y_j(k) and its proof against A and Y_j(k)).
    function _provenMask(Round storage r, uint256 roundId, Member storage m, bytes calldata masks)
        internal
        view
        returns (uint64[] memory mask)
    {
        uint256[] memory next = _activeNeighbours(r, m.position - 1);
        if (masks.length != POINT_BYTES + OWN_BYTES + next.length * PAIR_BYTES) {
            revert MasksLength(masks.length, POINT_BYTES + OWN_BYTES + next.length * PAIR_BYTES);
        }
        MaskSum memory acc =
            MaskSum(_context(roundId), new uint256[](uint256(r.slots) + 1), _index(r), r.iteration, r.slotBits);
        if (bytes16(keccak256(masks[:POINT_BYTES])) != m.keyHash) revert BlameOpeningInvalid(msg.sender, 1);
        if (!_ownPoint(m, masks[:POINT_BYTES], acc.ctx, acc.k, masks[POINT_BYTES:POINT_BYTES + OWN_BYTES])) {
            revert BlameOpeningInvalid(msg.sender, 2);
        }
        _addPairs(r, acc, masks, next);
        mask = new uint64[](acc.total.length);
        for (uint256 t = 0; t < mask.length; ++t) {
            mask[t] = uint64(acc.total[t]);
        }
    }

    /// @dev Adds the proven pair masks of `masks` (after the key and the own point), one per
    ///      active neighbour in `next`.
    function _addPairs(Round storage r, MaskSum memory acc, bytes calldata masks, uint256[] memory next) internal view {
        for (uint256 q = 0; q < next.length; ++q) {
            uint256 at = POINT_BYTES + OWN_BYTES + q * PAIR_BYTES;
            if (!_addPair(r, acc, masks[:POINT_BYTES], r.participants[next[q]], masks[at:at + PAIR_BYTES])) {
                revert BlameOpeningInvalid(msg.sender, 3 + q);
            }
        }
    }

    /// @dev Adds the caller's pair mask with `other` (`pair`: Y_j(k) || P || proof against its key)
    ///      to the sum; false if the point or the proof does not hold.
    function _addPair(Round storage r, MaskSum memory acc, bytes calldata key, address other, bytes calldata pair)
        internal
        view
        returns (bool)
    {
        if (bytes16(keccak256(pair[:POINT_BYTES])) != _pointHash(r.members[other], acc.k)) return false;
        if (!Secp256k1.verifyDleq(key, pair[:POINT_BYTES], pair[POINT_BYTES:2 * POINT_BYTES], pair[2 * POINT_BYTES:])) {
            return false;
        }
        bytes32 seed = _seed(acc.ctx, pair[POINT_BYTES:2 * POINT_BYTES], msg.sender, other);
        _addStream(acc.total, seed, acc.index, acc.bits, msg.sender < other);
        return true;
    }

    /// @dev Whether `own` (Y_i(k) || its proof) is the member's mask point of iteration k and the
    ///      proof shows it is a H_k for the a of its key A.
    function _ownPoint(Member storage m, bytes calldata key, bytes memory ctx, uint32 k, bytes calldata own)
        internal
        view
        returns (bool)
    {
        return bytes16(keccak256(own[:POINT_BYTES])) == _pointHash(m, k)
            && Secp256k1.verifyDleq(key, _base(ctx, k), own[:POINT_BYTES], own[POINT_BYTES:]);
    }

    /// @dev The plaintext's slot sums and check slot less `mask` (m < n, 0 < rho < n).
    function _decode(Round storage r, uint256 roundId, bytes calldata mRho, uint64[] memory mask)
        internal
        view
        returns (int64[] memory sums, uint64 check)
    {
        PaillierMath.Layout memory layout = PaillierMath.Layout(r.slots, r.slotBits, r.slotWidth);
        PaillierMath.Opening outcome;
        (outcome, sums, check) = paillier.open(r.keyData, mRho, layout, mask);
        if (outcome == PaillierMath.Opening.PlaintextOutOfRange) revert PlaintextOutOfRange(roundId, r.iteration);
        if (outcome == PaillierMath.Opening.OpeningNotCanonical) revert OpeningNotCanonical(roundId, r.iteration);
    }

    /// @dev The current dispute's mark (iteration << 16 | attempt, plus one).
    function _epoch(Round storage r) internal view returns (uint48) {
        return uint48(_aggregateKey(r.iteration, r.attempt) + 1);
    }

    /// @dev The hash kept of a member's mask point of iteration k (posted one iteration ahead).
    function _pointHash(Member storage m, uint32 k) internal view returns (bytes16) {
        return m.submittedIterationPlusOne == k + 1 ? m.pointHash : m.nextPointHash;
    }

    /// @dev What binds masks to the round (secagg.round_context).
    function _context(uint256 roundId) internal view returns (bytes memory) {
        return abi.encodePacked(address(this), roundId, block.chainid);
    }

    /// @dev H_k of the round (secagg.iteration_point).
    function _base(bytes memory ctx, uint32 k) internal view returns (bytes memory) {
        return Secp256k1.hashToPoint(abi.encodePacked(ctx, "/pair/", uint64(k)));
    }

    /// @dev The stream index of the current attempt (secagg.stream_index).
    function _index(Round storage r) internal view returns (uint256) {
        return _aggregateKey(r.iteration, r.attempt);
    }

    /// @dev The seed a pair mask is expanded from (secagg.mask_seed): bound to the round and to
    ///      both addresses, lower first, so that no two pairs share a mask.
    function _seed(bytes memory ctx, bytes calldata point, address a, address b) internal pure returns (bytes32) {
        (address low, address high) = a < b ? (a, b) : (b, a);
        return sha256(abi.encodePacked("gridshare/secagg/mask/", ctx, point, low, high));
    }

    /// @dev Adds (or subtracts) to `total`, mod 2^bits, the mask expanded from `seed` at stream
    ///      index `index`: keccak256(seed || index || counter) blocks cut into ceil(bits / 8)-byte
    ///      values (masks.stream).
    function _addStream(uint256[] memory total, bytes32 seed, uint256 index, uint256 bits, bool plus) internal pure {
        uint256 width = (bits + 7) / 8;
        uint256 blocks = (total.length * width + 31) / 32;
        bytes memory raw = new bytes(blocks * 32 + 32);
        for (uint256 c = 0; c < blocks; ++c) {
            bytes32 b = keccak256(abi.encodePacked(seed, uint64(index), uint32(c)));
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

    // ------------------------------------------------------------------ neighbours (SecAgg+)

    /// @dev The graph neighbours of position `p` (0-based) that are still active, ascending.
    function _activeNeighbours(Round storage r, uint256 p) internal view returns (uint256[] memory out) {
        uint256[] memory all = _neighbours(p, r.participantCount);
        uint256 n;
        out = new uint256[](all.length);
        for (uint256 q = 0; q < all.length; ++q) {
            if (r.members[r.participants[all[q]]].droppedBeforePlusOne == 0) out[n++] = all[q];
        }
        assembly ("memory-safe") {
            mstore(out, n)
        }
    }

    /// @dev Where `p` is in `list` (NotNeighbours if it is not).
    function _indexOf(uint256[] memory list, uint256 p, address a, address b) internal pure returns (uint256) {
        for (uint256 q = 0; q < list.length; ++q) {
            if (list[q] == p) return q;
        }
        revert NotNeighbours(a, b);
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
}
