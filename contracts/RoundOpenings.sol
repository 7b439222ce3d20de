// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PaillierMath} from "./PaillierMath.sol";
import {RoundStorage} from "./RoundStorage.sol";
import {CloseReason, Member, Phase, Round, RoundParams, Step, Windows} from "./RoundTypes.sol";

/// @title RoundOpenings
/// @notice Aggregation, publication and opening challenges of PrivateRounds' rounds: a module that
///         PrivateRounds creates and runs by DELEGATECALL on its own storage, with the caller's
///         calldata (its functions are PrivateRounds' `aggregate`, `publish`, `conclude` and
///         `challengeOpening`, documented there). Called directly, it sees no rounds.
/// @dev Openings are optimistic: `publish` and `conclude` check only that m < n and 0 < rho < n
///      and keep keccak256(agg || m || rho); anyone may then challenge one, and the check
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
        r.threshold = p.threshold;
        r.windows = p.windows;
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
        _enterAggregation(r, roundId);
        uint32 k = r.iteration;
        if (r.aggregatedIterationPlusOne == k + 1) revert AlreadyAggregated(roundId, k);
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
        if (absorbed == total) {
            r.aggregateHash = bytes28(keccak256(agg));
            r.aggregatedIterationPlusOne = k + 1;
            r.absorbed = 0;
            r.cursor = 0;
            emit Aggregated(roundId, k, agg);
        } else {
            r.aggregateHash = bytes28(keccak256(agg));
            r.absorbed = uint16(absorbed);
            emit AggregationProgress(roundId, k, absorbed, agg);
        }
    }

    /// @notice PrivateRounds.publish.
    /// @param roundId the round.
    /// @param agg the aggregate.
    /// @param plaintext its decryption.
    /// @param opening its opening.
    /// @param corrections the recovery's mask corrections.
    /// @param nextPrices the next prices.
    /// @return sums the decoded slot sums.
    function publish(
        uint256 roundId,
        bytes calldata agg,
        bytes calldata plaintext,
        bytes calldata opening,
        uint64[] calldata corrections,
        uint64[] calldata nextPrices
    ) external returns (int64[] memory sums) {
        Round storage r = _round(roundId);
        uint32 k = r.iteration;
        sums = _open(r, roundId, agg, plaintext, opening, corrections);
        if (uint256(k) + 1 >= r.maxIterations) revert IterationCapReached(r.maxIterations);
        _checkPrices(r, nextPrices);
        r.prices = nextPrices;
        r.iteration = k + 1;
        r.submissions = 0;
        emit Published(roundId, k, plaintext, opening, corrections, sums, nextPrices);
        _beginStep(r, roundId, Step.Submitting, r.windows.submission);
    }

    /// @notice PrivateRounds.conclude.
    /// @param roundId the round.
    /// @param agg the aggregate.
    /// @param plaintext its decryption.
    /// @param opening its opening.
    /// @param corrections the recovery's mask corrections.
    /// @return sums the decoded slot sums.
    function conclude(
        uint256 roundId,
        bytes calldata agg,
        bytes calldata plaintext,
        bytes calldata opening,
        uint64[] calldata corrections
    ) external returns (int64[] memory sums) {
        Round storage r = _round(roundId);
        sums = _open(r, roundId, agg, plaintext, opening, corrections);
        r.finalSums = sums;
        r.challengeUntil = uint64(block.number) + r.windows.challenge;
        _setPhase(r, roundId, Phase.Concluded);
        emit Concluded(roundId, r.iteration, plaintext, opening, corrections, sums, r.prices);
    }

    /// @notice PrivateRounds.challengeOpening.
    /// @param roundId the round.
    /// @param iteration the challenged iteration.
    /// @param published the iteration's aggregate || plaintext || opening, as published.
    /// @param acc the accumulator so far (empty to start).
    /// @param steps 256-bit steps to run now.
    /// @return next the accumulator after this call.
    function challengeOpening(uint256 roundId, uint32 iteration, bytes calldata published, bytes calldata acc, uint8 steps)
        external
        returns (bytes memory next)
    {
        Round storage r = _round(roundId);
        uint256 L = uint256(r.nWords) * 32;
        if (published.length != 4 * L || steps == 0) revert ChallengeMismatch(roundId, iteration);
        _admitChallenge(r, roundId, iteration, keccak256(published), acc);
        bool finished;
        (next, finished) = _runChallenge(r, acc, published[3 * L:], steps);
        if (finished) _judge(r, roundId, iteration, _holds(r.keyData, published, next));
    }

    // ------------------------------------------------------------------ internals

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
            if (uint256(p.slots) * p.slotWidth + 8 > 8 * L) revert BadParameters("slots exceed plaintext");
        } else if (p.windows.challenge != 0 || p.slotBits != 0 || p.slotWidth != 0 || p.threshold != 0) {
            revert BadParameters("no key: no slot layout, openings or recovery");
        }
        Windows calldata w = p.windows;
        if (w.registration == 0 || w.submission == 0 || w.coordinator == 0) revert BadParameters("windows");
        if (p.threshold != 0 && w.recovery == 0) revert BadParameters("recovery window");
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


    /// @dev Starts a challenge of iteration `iteration`'s opening (hash `h`), or checks that this
    ///      call continues the one in progress from accumulator `acc`.
    function _admitChallenge(Round storage r, uint256 roundId, uint32 iteration, bytes32 h, bytes calldata acc) internal {
        if (r.keyData == address(0) || r.windows.challenge == 0) revert NoChallenges(roundId);
        Phase phase = r.phase;
        if (phase != Phase.Iterating && phase != Phase.Concluded) revert WrongPhase(roundId, phase, Phase.Concluded);
        if (h != r.openings[iteration]) revert ChallengeMismatch(roundId, iteration);
        uint32 current = r.challengeIterationPlusOne;
        if (current == 0) {
            if (phase == Phase.Concluded && block.number > r.challengeUntil) revert ChallengeWindowClosed(r.challengeUntil);
            if (acc.length != 0) revert ChallengeMismatch(roundId, iteration);
            r.challengeIterationPlusOne = iteration + 1;
            r.challenger = msg.sender;
            emit Challenged(roundId, iteration, msg.sender);
        } else {
            uint64 last = r.challengeUntil + r.windows.challenge; // a challenge in progress may finish until then
            if (phase == Phase.Concluded && block.number > last) revert ChallengeWindowClosed(last);
            if (current != iteration + 1) revert ChallengeInProgress(roundId, current - 1);
            if (bytes28(keccak256(acc)) != r.challengeAcc) revert ChallengeMismatch(roundId, iteration);
        }
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

    /// @dev Whether the published aggregate and plaintext fit rho^n = `rhoN`.
    function _holds(address keyData, bytes calldata published, bytes memory rhoN) internal view returns (bool) {
        uint256 L = published.length / 4;
        return paillier.openingHolds(keyData, published[:2 * L], published[2 * L:3 * L], rhoN);
    }

    /// @dev Ends a challenge: a false opening of an aggregate closes the round; a false blame
    ///      opening leaves its participant uncleared.
    function _judge(Round storage r, uint256 roundId, uint32 iteration, bool holds) internal {
        address challenger = r.challenger;
        r.challengeIterationPlusOne = 0;
        r.challenger = address(0);
        if (holds) {
            emit OpeningConfirmed(roundId, iteration);
        } else {
            emit OpeningDisproved(roundId, iteration, challenger);
            if (iteration >= BLAME_KEY) r.members[r.participants[iteration - BLAME_KEY - 1]].cleared = false;
            else _close(r, roundId, CloseReason.OpeningDisproved);
        }
    }

    /// @dev Aggregation may begin once the submissions are closed and, in rounds with recovery, the
    ///      recovery step is complete or late (the coordinator's window then runs from its deadline).
    function _enterAggregation(Round storage r, uint256 roundId) internal {
        Step step = r.step;
        if (step == Step.Aggregating) return;
        if (step != Step.Recovering) revert WrongStep(roundId, step, Step.Aggregating);
        uint64 deadline = r.deadline;
        if (block.number <= deadline && r.recoveries != r.submissions) revert DeadlineNotPassed(deadline);
        uint64 late = deadline + r.windows.coordinator;
        r.step = Step.Aggregating;
        r.deadline = late;
        emit StepChanged(roundId, r.iteration, Phase.Iterating, Step.Aggregating, late);
    }

    /// @dev The decoded sums of the current iteration's aggregate (coordinator only, on time), or,
    ///      in a round without a key, none once the submissions are closed.
    function _open(
        Round storage r,
        uint256 roundId,
        bytes calldata agg,
        bytes calldata plaintext,
        bytes calldata opening,
        uint64[] calldata corrections
    ) internal returns (int64[] memory sums) {
        if (!_readyToPublish(r, roundId, agg, plaintext.length, opening.length, corrections.length)) return sums;
        sums = _decode(r, roundId, plaintext, opening, corrections);
        if (r.windows.challenge != 0) r.openings[r.iteration] = keccak256(abi.encodePacked(agg, plaintext, opening));
    }

    /// @dev The coordinator, on time, with an aggregate of the current iteration and data of the
    ///      round's lengths; false in a round without a key (nothing to decode).
    function _readyToPublish(
        Round storage r,
        uint256 roundId,
        bytes calldata agg,
        uint256 plaintextLength,
        uint256 openingLength,
        uint256 correctionsLength
    ) internal returns (bool keyed) {
        _requireCoordinator(r);
        _requirePhase(r, roundId, Phase.Iterating);
        uint32 k = r.iteration;
        uint256 L = uint256(r.nWords) * 32;
        if (plaintextLength != L) revert PlaintextLength(plaintextLength, L);
        if (openingLength != L) revert OpeningLength(openingLength, L);
        uint256 expected = r.threshold == 0 ? 0 : r.slots;
        if (correctionsLength != expected) revert CorrectionsLength(correctionsLength, expected);
        keyed = r.keyData != address(0);
        if (keyed) _enterAggregation(r, roundId);
        else if (r.step != Step.Aggregating) revert WrongStep(roundId, r.step, Step.Aggregating);
        _requireOnTime(r);
        if (!keyed) {
            if (agg.length != 0) revert AggregateMismatch(roundId, k);
            return false;
        }
        if (r.aggregatedIterationPlusOne != k + 1) revert NotAggregated(roundId, k);
        if (bytes28(keccak256(agg)) != r.aggregateHash) revert AggregateMismatch(roundId, k);
    }

    /// @dev Checks m < n and 0 < rho < n and decodes the sums less the corrections.
    function _decode(
        Round storage r,
        uint256 roundId,
        bytes calldata plaintext,
        bytes calldata opening,
        uint64[] calldata corrections
    ) internal view returns (int64[] memory sums) {
        PaillierMath.Layout memory layout = PaillierMath.Layout(r.slots, r.slotBits, r.slotWidth);
        PaillierMath.Opening outcome;
        (outcome, sums) = paillier.open(r.keyData, bytes.concat(plaintext, opening), layout, corrections);
        if (outcome == PaillierMath.Opening.PlaintextOutOfRange) revert PlaintextOutOfRange(roundId, r.iteration);
        if (outcome == PaillierMath.Opening.OpeningNotCanonical) revert OpeningNotCanonical(roundId, r.iteration);
    }

    /// @dev Checks each ciphertext and commitment against the stored hash of the next participant
    ///      (from registration index `cursor` on) that submitted in iteration `k`; returns the index
    ///      after the last one.
    function _absorbAll(
        Round storage r,
        uint32 k,
        uint256 cursor,
        bytes[] calldata ciphertexts,
        bytes32[] calldata commitments
    ) internal view returns (uint256) {
        uint256 L2 = uint256(r.nWords) * 64;
        address[] storage parts = r.participants;
        for (uint256 i = 0; i < ciphertexts.length; ++i) {
            address who = parts[cursor];
            Member storage m = r.members[who];
            while (m.submittedIterationPlusOne != k + 1) {
                who = parts[++cursor];
                m = r.members[who];
            }
            bytes calldata ct = ciphertexts[i];
            if (ct.length != L2) revert SubmissionMismatch(who, k);
            if (bytes26(keccak256(abi.encodePacked(keccak256(ct), commitments[i]))) != m.submissionHash) {
                revert SubmissionMismatch(who, k);
            }
            ++cursor;
        }
        return cursor;
    }

}
