// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PaillierMath} from "./PaillierMath.sol";
import {RoundStorage} from "./RoundStorage.sol";
import {CloseReason, DropReason, Fault, Member, Phase, Round, RoundParams, Step, Windows} from "./RoundTypes.sol";

/// @title RoundOpenings
/// @notice Creation, moving past deadlines, aggregation, publication, disputes and opening
///         challenges of PrivateRounds' rounds: a module that PrivateRounds runs by DELEGATECALL on
///         its own storage, with the caller's calldata (its functions are PrivateRounds'
///         `createRound`, `advance`, `aggregate`, `publish`, `conclude`, `dispute` and
///         `challengeOpening`, documented there). Called directly, it sees no rounds.
/// @dev Openings are optimistic: `publish`, `conclude` and `dispute` check only that m < n and
///      0 < rho < n and keep keccak256(agg || m || rho); anyone may then challenge one, and the check
///      agg == (1 + m n) rho^n mod n^2 runs in 256-bit steps of the exponent over as many
///      transactions as the per-transaction gas cap needs (EIP-7825; under EIP-7883's MODEXP
///      pricing one full check costs ~31M gas at 2048 bits).
contract RoundOpenings is RoundStorage {
    /// @notice The Paillier arithmetic (PrivateRounds').
    PaillierMath public immutable paillier;

    /// @param paillier_ PrivateRounds' PaillierMath.
    constructor(PaillierMath paillier_) {
        paillier = paillier_;
    }

    /// @notice PrivateRounds.createRound.
    /// @param p the round parameters.
    /// @return roundId the new round's id.
    function createRound(RoundParams calldata p) external returns (uint256 roundId) {
        _checkParams(p);
        roundId = ++roundCount;
        Round storage r = _rounds[roundId];
        if (p.n.length != 0) {
            bytes memory n = p.n;
            r.keyData = _storeData(abi.encodePacked(paillier.square(n), n));
            r.nWords = uint8(n.length / 32);
            r.slotBits = p.slotBits;
            r.slotWidth = p.slotWidth;
        }
        r.exists = true;
        r.coordinator = msg.sender;
        r.rule = p.rule;
        r.parentRoundId = p.parentRoundId;
        r.slots = p.slots;
        r.maxIterations = p.maxIterations;
        r.pairLanes = p.pairLanes;
        r.gridAccount = p.gridAccount;
        r.priceFloor = p.priceFloor;
        r.priceCap = p.priceCap;
        r.windows = p.windows;
        r.collateral = p.collateral;
        r.bond = p.bond;
        r.signedMembers = p.signedMembers;
        if (p.terms.length != 0) r.termsData = _storeData(p.terms);
        uint256 m = p.members.length;
        if (m != 0) {
            r.allowList = true;
            mapping(address => uint256) storage allowed = r.allowedPlusOne;
            for (uint256 i = 0; i < m; ++i) {
                address a = p.members[i];
                if (a == address(0) || allowed[a] != 0) revert BadParameters("members");
                allowed[a] = i + 1;
            }
        }
        p.rule.configure(p, msg.sender);
        emit RoundCreated(roundId, msg.sender, p.parentRoundId, r.keyData, p);
        _beginStep(r, roundId, Step.Submitting, p.windows.registration);
    }

    /// @notice PrivateRounds.advance.
    /// @param roundId the round.
    /// @param missing every active participant that missed the step, in registration order.
    function advance(uint256 roundId, address[] calldata missing) external {
        Round storage r = _round(roundId);
        _requirePhase(r, roundId, Phase.Iterating);
        Step step = r.step;
        if (step == Step.Aggregating) revert WrongStep(roundId, step, Step.Submitting);
        uint64 deadline = r.deadline;
        if (block.number <= deadline) revert DeadlineNotPassed(deadline);
        bool dispute = step == Step.Disputing;
        if (dispute && _challengeInProgress(r)) revert ChallengeInProgress(roundId, r.challengeKeyPlusOne - 1);
        uint256 expected = uint256(r.active) - r.submissions;
        _dropMissing(r, roundId, missing, dispute);
        if (missing.length != expected) revert MissingCount(missing.length, expected);
        uint256 culprits;
        if (dispute) culprits = _dropCulprits(r, roundId);
        if (dispute && missing.length + culprits == 0) {
            _close(r, roundId, CloseReason.DisputeUnresolved);
        } else if (r.active < MIN_PARTICIPANTS) {
            _close(r, roundId, CloseReason.TooFewParticipants);
        } else {
            r.attempt += 1;
            _beginAttempt(r, roundId);
        }
    }

    /// @notice PrivateRounds.aggregate: the next chunk of the iteration's submissions.
    /// @param roundId the round.
    /// @param soFar the product of the earlier chunks (empty for the first).
    /// @param ciphertexts the next submitted ciphertexts, registration order.
    /// @param commitments their commitments.
    /// @return agg the product so far.
    function aggregate(uint256 roundId, bytes calldata soFar, bytes[] calldata ciphertexts, bytes32[] calldata commitments)
        external
        returns (bytes memory agg)
    {
        Round storage r = _round(roundId);
        _requirePhase(r, roundId, Phase.Iterating);
        if (r.keyData == address(0)) revert NoKey(roundId);
        _requireStep(r, roundId, Step.Aggregating);
        uint32 k = r.iteration;
        if (r.aggregatedAttempt) revert AlreadyAggregated(roundId, k);
        uint256 absorbed = r.absorbed;
        if (absorbed == 0 ? soFar.length != 0 : bytes28(keccak256(soFar)) != r.aggregateHash) {
            revert AggregateMismatch(roundId, k);
        }
        uint256 count = ciphertexts.length;
        uint256 total = r.submissions;
        if (count == 0 || commitments.length != count || absorbed + count > total) {
            revert SubmissionCount(absorbed + count, total);
        }
        r.cursor = uint16(_absorbAll(r, k, r.cursor, ciphertexts, commitments));
        agg = paillier.product(r.keyData, soFar, ciphertexts);
        absorbed += count;
        r.aggregateHash = bytes28(keccak256(agg));
        if (absorbed == total) {
            r.aggregatedAttempt = true;
            r.absorbed = 0;
            r.cursor = 0;
            emit Aggregated(roundId, k, agg);
        } else {
            r.absorbed = uint16(absorbed);
            emit AggregationProgress(roundId, k, absorbed, agg);
        }
    }

    /// @notice PrivateRounds.publish.
    /// @param roundId the round.
    /// @param agg the aggregate.
    /// @param plaintext its decryption.
    /// @param opening its opening.
    /// @param nextPrices the next prices.
    /// @return sums the decoded slot sums.
    function publish(
        uint256 roundId,
        bytes calldata agg,
        bytes calldata plaintext,
        bytes calldata opening,
        uint64[] calldata nextPrices
    ) external returns (int64[] memory sums) {
        Round storage r = _round(roundId);
        uint32 k = r.iteration;
        (sums,) = _open(r, roundId, agg, plaintext, opening, true);
        if (uint256(k) + 1 >= r.maxIterations) revert IterationCapReached(r.maxIterations);
        _checkPrices(r, nextPrices);
        r.prices = nextPrices;
        r.iteration = k + 1;
        r.attempt = 0;
        emit Published(roundId, k, plaintext, opening, sums, nextPrices);
        _beginAttempt(r, roundId);
    }

    /// @notice PrivateRounds.conclude.
    /// @param roundId the round.
    /// @param agg the aggregate.
    /// @param plaintext its decryption.
    /// @param opening its opening.
    /// @return sums the decoded slot sums.
    function conclude(uint256 roundId, bytes calldata agg, bytes calldata plaintext, bytes calldata opening)
        external
        returns (int64[] memory sums)
    {
        Round storage r = _round(roundId);
        (sums,) = _open(r, roundId, agg, plaintext, opening, true);
        r.finalSums = sums;
        Windows storage w = r.windows;
        uint64 until = uint64(block.number) + w.challenge;
        r.challengeUntil = until;
        r.revealUntil = until + w.challenge + w.submission; // after a challenge in progress could end
        _setPhase(r, roundId, Phase.Concluded);
        emit Concluded(roundId, r.iteration, plaintext, opening, sums, r.prices);
    }

    /// @notice PrivateRounds.dispute.
    /// @param roundId the round.
    /// @param agg the aggregate.
    /// @param plaintext its decryption.
    /// @param opening its opening.
    function dispute(uint256 roundId, bytes calldata agg, bytes calldata plaintext, bytes calldata opening) external {
        Round storage r = _round(roundId);
        if (r.keyData == address(0)) revert NoKey(roundId);
        (, uint64 check) = _open(r, roundId, agg, plaintext, opening, false);
        emit Disputed(roundId, r.iteration, r.attempt, plaintext, opening, check);
        if (r.windows.challenge == 0) {
            _close(r, roundId, CloseReason.MasksDoNotCancel); // nobody could prove an opening false
            return;
        }
        r.submissions = 0; // counts the openings
        _beginStep(r, roundId, Step.Disputing, 2 * r.windows.submission); // openings, then accusations
    }

    /// @notice PrivateRounds.challengeOpening.
    /// @param roundId the round.
    /// @param key the opening challenged.
    /// @param published the ciphertext || plaintext || opening, as posted.
    /// @param acc the accumulator so far (empty to start).
    /// @param steps 256-bit steps to run now.
    /// @return next the accumulator after this call.
    function challengeOpening(uint256 roundId, uint256 key, bytes calldata published, bytes calldata acc, uint8 steps)
        external
        returns (bytes memory next)
    {
        Round storage r = _round(roundId);
        uint256 L = uint256(r.nWords) * 32;
        if (published.length != 4 * L || steps == 0) revert ChallengeMismatch(roundId, key);
        _admitChallenge(r, roundId, key, keccak256(published), acc);
        bool finished;
        (next, finished) = _runChallenge(r, acc, published[3 * L:], steps);
        if (finished) _judge(r, roundId, key, _holds(r.keyData, published, next));
    }

    // ------------------------------------------------------------------ internals

    /// @dev The current dispute's mark (iteration << 16 | attempt, plus one).
    function _epoch(Round storage r) internal view returns (uint48) {
        return uint48(_aggregateKey(r.iteration, r.attempt) + 1);
    }

    /// @dev Drops `missing`: active participants, in registration order, that did not submit in
    ///      this attempt (did not open, in a dispute).
    function _dropMissing(Round storage r, uint256 roundId, address[] calldata missing, bool dispute) internal {
        uint48 epoch = _epoch(r);
        uint256 last;
        for (uint256 i = 0; i < missing.length; ++i) {
            address who = missing[i];
            Member storage m = r.members[who];
            uint256 position = m.position;
            bool acted = dispute ? m.openedPlusOne == epoch : _submittedNow(r, m);
            if (position <= last || m.droppedBeforePlusOne != 0 || acted) revert NotMissing(who);
            last = position;
            _drop(r, roundId, who, dispute ? DropReason.MissedOpening : DropReason.MissedSubmission);
        }
    }

    /// @dev After a dispute: drops every active culprit it proved; how many.
    function _dropCulprits(Round storage r, uint256 roundId) internal returns (uint256 count) {
        address[] storage parts = r.participants;
        for (uint256 i = 0; i < parts.length; ++i) {
            Member storage m = r.members[parts[i]];
            if (m.culprit && m.droppedBeforePlusOne == 0) {
                _drop(r, roundId, parts[i], DropReason.Culprit);
                ++count;
            }
        }
    }


    function _checkParams(RoundParams calldata p) internal view {
        if (address(p.rule).code.length == 0) revert BadParameters("rule");
        uint256 L = p.n.length;
        if (L != 0) {
            if (L % 32 != 0 || L > MAX_MODULUS_BYTES) revert BadParameters("modulus length");
            if (uint8(p.n[L - 1]) & 1 == 0) revert BadParameters("modulus even");
            if (bytes32(p.n[0:32]) == bytes32(0)) revert BadParameters("modulus leading word zero");
            if (p.slots == 0) revert BadParameters("slots");
            if (p.slotBits == 0 || p.slotBits > 64) revert BadParameters("slot bits");
            if (p.slotWidth <= p.slotBits) revert BadParameters("slot width");
            if ((uint256(p.slots) + 1) * p.slotWidth + 8 > 8 * L) revert BadParameters("slots exceed plaintext"); // + the check slot
        } else if (p.windows.challenge != 0 || p.slotBits != 0 || p.slotWidth != 0) {
            revert BadParameters("no key: no slot layout or openings");
        }
        Windows calldata w = p.windows;
        if (w.registration == 0 || w.submission == 0 || w.coordinator == 0) revert BadParameters("windows");
        if (p.signedMembers && p.members.length != 0) revert BadParameters("members and signatures");
        if (p.maxIterations == 0) revert BadParameters("iteration cap");
        uint256 n = p.priceFloor.length;
        if (n == 0 || p.priceCap.length != n) revert BadParameters("price band length");
        for (uint256 t = 0; t < n; ++t) {
            if (p.priceFloor[t] > p.priceCap[t]) revert BadParameters("price floor above cap");
        }
        if (p.gridAccount == address(0)) revert BadParameters("grid account");
        if (p.terms.length > MAX_DATA_BYTES) revert BadParameters("terms length");
        uint256 parent = p.parentRoundId;
        if (parent != 0) {
            Round storage pr = _rounds[parent];
            if (!pr.exists) revert BadParameters("parent round");
            if (pr.coordinator != msg.sender && pr.members[msg.sender].position == 0) {
                revert BadParameters("not a party of the parent round");
            }
        }
    }


    /// @dev Stores `data` as the code of a new contract, 0x00 || data (SSTORE2: read back with
    ///      EXTCODECOPY, one cold account access instead of a storage slot per word).
    function _storeData(bytes memory data) internal returns (address at) {
        uint256 codeLen = 1 + data.length;
        bytes memory init = abi.encodePacked(hex"61", uint16(codeLen), hex"80600a3d393df300", data);
        assembly ("memory-safe") {
            at := create(0, add(init, 32), mload(init))
        }
        if (at == address(0)) revert DataStoreFailed();
    }


    /// @dev Starts a challenge of the opening under `key` (hash `h`), or checks that this call
    ///      continues the one in progress from accumulator `acc`. Openings may be challenged while
    ///      the round iterates and, after conclusion, until the challenge window closes.
    function _admitChallenge(Round storage r, uint256 roundId, uint256 key, bytes32 h, bytes calldata acc) internal {
        if (r.keyData == address(0) || r.windows.challenge == 0) revert NoChallenges(roundId);
        Phase phase = r.phase;
        if (phase != Phase.Iterating && phase != Phase.Concluded) revert WrongPhase(roundId, phase, Phase.Concluded);
        if (h != r.openings[key] || h == bytes32(0)) revert ChallengeMismatch(roundId, key);
        if (_challengeInProgress(r)) {
            uint256 current = r.challengeKeyPlusOne;
            if (current != key + 1) revert ChallengeInProgress(roundId, current - 1);
            if (bytes28(keccak256(acc)) != r.challengeAcc) revert ChallengeMismatch(roundId, key);
            return;
        }
        uint64 until = _challengeWindow(r, key);
        if (block.number > until) revert ChallengeWindowClosed(until);
        if (acc.length != 0) revert ChallengeMismatch(roundId, key);
        r.challengeKeyPlusOne = key + 1;
        r.challenger = msg.sender;
        r.challengeDeadline = uint64(block.number) + r.windows.challenge;
        r.challengeStep = 0;
        emit Challenged(roundId, key, msg.sender);
    }

    /// @dev The last block a challenge of the opening under `key` may start: after conclusion the
    ///      challenge window; in a dispute its deadline (a dispute opening only in its own dispute);
    ///      else while the round iterates.
    function _challengeWindow(Round storage r, uint256 key) internal view returns (uint64) {
        if (r.phase == Phase.Concluded) return r.challengeUntil;
        bool disputing = r.step == Step.Disputing;
        if (key >> 128 == 1) {
            bool current = uint32(key >> 32) == r.iteration && uint16(key >> 16) == r.attempt;
            return disputing && current ? r.deadline : 0;
        }
        return disputing ? r.deadline : type(uint64).max;
    }

    /// @dev Runs up to `steps` steps; true once all of n's words are processed.
    function _runChallenge(Round storage r, bytes calldata acc, bytes calldata opening, uint8 steps)
        internal
        returns (bytes memory next, bool finished)
    {
        uint256 from = r.challengeStep;
        uint256 words = r.nWords;
        uint256 to = from + steps > words ? words : from + steps;
        next = paillier.challengeSteps(r.keyData, acc, opening, from, to - from);
        finished = to == words;
        r.challengeStep = finished ? 0 : uint8(to);
        r.challengeAcc = finished ? bytes28(0) : bytes28(keccak256(next));
    }

    /// @dev Whether the published ciphertext and plaintext fit rho^n = `rhoN`.
    function _holds(address keyData, bytes calldata published, bytes memory rhoN) internal view returns (bool) {
        uint256 L = published.length / 4;
        return paillier.openingHolds(keyData, published[:2 * L], published[2 * L:3 * L], rhoN);
    }

    /// @dev Ends a challenge: the coordinator's false decryption closes the round and forfeits its
    ///      bond; a participant's false opening (in a dispute or a blame step) makes it a culprit,
    ///      which forfeits its deposit.
    function _judge(Round storage r, uint256 roundId, uint256 key, bool holds) internal {
        address challenger = r.challenger;
        r.challengeKeyPlusOne = 0;
        r.challenger = address(0);
        if (holds) {
            emit OpeningConfirmed(roundId, key);
            return;
        }
        emit OpeningDisproved(roundId, key, challenger);
        if (key >> 128 == 0) {
            _forfeit(r, roundId, r.coordinator, Fault.CoordinatorFalseOpening);
            _close(r, roundId, CloseReason.OpeningDisproved);
            return;
        }
        Member storage m = r.members[r.participants[uint16(key) - 1]];
        m.cleared = false;
        if (!m.culprit) _forfeit(r, roundId, r.participants[uint16(key) - 1], Fault.FalseOpening);
    }

    /// @dev The decoded sums of the current attempt's aggregate (coordinator only, on time), or,
    ///      in a round without a key, none once the submissions are closed. `cancelled`: whether
    ///      the check slot must be zero (publish, conclude) or not (dispute, which keeps it).
    function _open(
        Round storage r,
        uint256 roundId,
        bytes calldata agg,
        bytes calldata plaintext,
        bytes calldata opening,
        bool cancelled
    ) internal returns (int64[] memory sums, uint64 check) {
        if (!_readyToPublish(r, roundId, agg, plaintext.length, opening.length)) return (sums, check);
        (sums, check) = _decode(r, roundId, plaintext, opening);
        if (cancelled && check != 0) revert MasksDoNotCancel(roundId, r.iteration, check);
        if (!cancelled && check == 0) revert MasksCancel(roundId, r.iteration);
        if (r.windows.challenge != 0) _keepOpening(r, keccak256(abi.encodePacked(agg, plaintext, opening)));
    }

    /// @dev Keeps the hash of the current attempt's decryption for a challenge.
    function _keepOpening(Round storage r, bytes32 h) internal {
        r.openings[_aggregateKey(r.iteration, r.attempt)] = h;
    }

    /// @dev The coordinator, on time, with an aggregate of the current attempt and data of the
    ///      round's lengths; false in a round without a key (nothing to decode).
    function _readyToPublish(Round storage r, uint256 roundId, bytes calldata agg, uint256 plaintextLength, uint256 openingLength)
        internal
        view
        returns (bool keyed)
    {
        _requireCoordinator(r);
        _requirePhase(r, roundId, Phase.Iterating);
        _requireStep(r, roundId, Step.Aggregating);
        _requireOnTime(r);
        uint32 k = r.iteration;
        uint256 L = uint256(r.nWords) * 32;
        if (plaintextLength != L) revert PlaintextLength(plaintextLength, L);
        if (openingLength != L) revert OpeningLength(openingLength, L);
        keyed = r.keyData != address(0);
        if (!keyed) {
            if (agg.length != 0) revert AggregateMismatch(roundId, k);
            return false;
        }
        if (!r.aggregatedAttempt) revert NotAggregated(roundId, k);
        if (bytes28(keccak256(agg)) != r.aggregateHash) revert AggregateMismatch(roundId, k);
    }

    /// @dev Checks m < n and 0 < rho < n and decodes the sums and the check slot.
    function _decode(Round storage r, uint256 roundId, bytes calldata plaintext, bytes calldata opening)
        internal
        view
        returns (int64[] memory sums, uint64 check)
    {
        PaillierMath.Layout memory layout = PaillierMath.Layout(r.slots, r.slotBits, r.slotWidth);
        PaillierMath.Opening outcome;
        (outcome, sums, check) = paillier.open(r.keyData, bytes.concat(plaintext, opening), layout, new uint64[](0));
        if (outcome == PaillierMath.Opening.PlaintextOutOfRange) revert PlaintextOutOfRange(roundId, r.iteration);
        if (outcome == PaillierMath.Opening.OpeningNotCanonical) revert OpeningNotCanonical(roundId, r.iteration);
    }

    /// @dev Checks each ciphertext and commitment against the stored hash of the next participant
    ///      (from registration index `cursor` on) that submitted in the current attempt; returns
    ///      the index after the last one.
    function _absorbAll(
        Round storage r,
        uint32 k,
        uint256 cursor,
        bytes[] calldata ciphertexts,
        bytes32[] calldata commitments
    ) internal view returns (uint256) {
        uint256 L2 = uint256(r.nWords) * 64;
        uint16 attempt = r.attempt;
        address[] storage parts = r.participants;
        for (uint256 i = 0; i < ciphertexts.length; ++i) {
            address who = parts[cursor];
            Member storage m = r.members[who];
            while (m.submittedIterationPlusOne != k + 1 || m.submittedAttempt != attempt) {
                who = parts[++cursor];
                m = r.members[who];
            }
            bytes calldata ct = ciphertexts[i];
            if (ct.length != L2) revert SubmissionMismatch(who, k);
            if (bytes24(keccak256(abi.encodePacked(keccak256(ct), commitments[i]))) != m.submissionHash) {
                revert SubmissionMismatch(who, k);
            }
            ++cursor;
        }
        return cursor;
    }

}
