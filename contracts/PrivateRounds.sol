// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {PaillierMath} from "./PaillierMath.sol";
import {RoundOpenings} from "./RoundOpenings.sol";
import {RoundSettlement} from "./RoundSettlement.sol";
import {Secp256k1} from "./lib/Secp256k1.sol";
import {RoundStorage} from "./RoundStorage.sol";
import {CloseReason, ISettlementRule, Member, Phase, Round, RoundParams, Step, Windows} from "./RoundTypes.sol";

/// @title PrivateRounds
/// @notice The generic private round of every gridshare mechanism: membership (an allow-list, the
///         creator's signature per participant, or open), the sharing of mask secrets for dropout
///         recovery, per-iteration submissions (a Paillier ciphertext, or none in rounds without a
///         key, a hiding commitment and optional pair messages) under deadlines, the dropping of
///         late participants and the survivors' recovery partials, on-chain homomorphic
///         aggregation in chunks, publication of decrypted aggregates whose openings anyone may
///         challenge, conclusion, settlement through the round's stateless rule contract,
///         cancellation when the coordinator is late, and a per-round token ledger. Rounds may
///         nest (a parent round id). See docs/protocol.md.
/// @dev Every phase change passes through `_setPhase`, every ledger move through `_update`
///      (RoundStorage). Aggregation, publication and challenges run in the RoundOpenings module,
///      the settlement in the RoundSettlement module (both by DELEGATECALL, with the caller's
///      calldata). Every event and error is declared once, in IPrivateRounds. Sign convention of
///      amounts: positive = paid by the account.
contract PrivateRounds is RoundStorage, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Read-only summary of a round.
    struct RoundInfo {
        Phase phase;
        Step step;
        uint32 iteration;
        uint64 deadline;
        address coordinator;
        address gridAccount;
        address rule;
        uint256 parentRoundId;
        address keyData;
        uint16 participantCount;
        uint16 active;
        uint16 submissions;
        uint16 recoveries;
        uint16 slots;
        uint8 slotBits;
        uint16 slotWidth;
        uint32 maxIterations;
        bool aggregated;
        uint256 modulusBytes;
        uint16 pairLanes;
        bool allowList;
        bool signedMembers;
        uint16 threshold;
        Windows windows;
        uint64 challengeUntil;
        uint32 challengeIterationPlusOne;
    }

    /// @notice The privacy minimum: a round starts, and goes on, with at least this many participants.
    uint256 public constant MIN_PARTICIPANTS = 3;
    uint256 internal constant POINT_BYTES = 33; // a compressed secp256k1 point

    /// @notice The settlement token.
    IERC20 public immutable token;
    /// @notice The stateless Paillier arithmetic.
    PaillierMath public immutable paillier;
    /// @notice The module for aggregation, publication and challenges (run by DELEGATECALL).
    address public immutable openings;
    /// @notice The settlement module (run by DELEGATECALL).
    address public immutable settlement;

    /// @dev The modules are deployed first and passed in (created here, their code would push this
    ///      contract's creation code past EIP-3860's 49,152 bytes). The audit checks that each
    ///      address runs the compiled code of its module.
    /// @param token_ the ERC-20 settlement token.
    /// @param paillier_ a PaillierMath.
    /// @param openings_ a RoundOpenings created with `paillier_`.
    /// @param settlement_ a RoundSettlement created with `paillier_`.
    constructor(IERC20 token_, PaillierMath paillier_, RoundOpenings openings_, RoundSettlement settlement_) {
        if (openings_.paillier() != paillier_ || settlement_.paillier() != paillier_) revert BadParameters("modules");
        token = token_;
        paillier = paillier_;
        openings = address(openings_);
        settlement = address(settlement_);
    }

    // ------------------------------------------------------------------ round life cycle

    /// @notice Creates a round; the caller becomes its coordinator. With a key, computes n^2 on
    ///         chain and stores n and n^2 as the code of a data contract; the terms likewise. The
    ///         round's rule validates the mechanism's part of the parameters (`configure`).
    ///         Registration is open for `windows.registration` blocks. Runs in RoundOpenings.
    /// @param p the round parameters.
    /// @return roundId the new round's id (1-based).
    function createRound(RoundParams calldata p) external returns (uint256 roundId) {
        (p, roundId);
        _delegate(openings);
    }

    /// @notice Joins a round that is still registering: open rounds and allow-listed members
    ///         (rounds with signed membership take `registerSigned`).
    /// @param roundId the round.
    /// @param maskKey the participant's X25519 public key (pair seeds, sealed shares and messages);
    ///        neither zero, nor of low order, nor used before in the round.
    function register(uint256 roundId, bytes32 maskKey) external {
        Round storage r = _round(roundId);
        if (r.signedMembers) revert BadSignature(msg.sender);
        uint256 indexPlusOne = r.allowList ? r.allowedPlusOne[msg.sender] : uint256(r.participantCount) + 1;
        if (indexPlusOne == 0) revert NotMember(msg.sender);
        _register(r, roundId, maskKey, indexPlusOne);
    }

    /// @notice Joins a round with signed membership, showing the creator's signature (EIP-191) of
    ///         keccak256(abi.encode(chainid, this contract, roundId, participant, memberIndex)).
    /// @param roundId the round.
    /// @param maskKey the participant's X25519 public key (as in `register`).
    /// @param memberIndex the participant's index among the members the creator admits.
    /// @param signature the creator's signature.
    function registerSigned(uint256 roundId, bytes32 maskKey, uint16 memberIndex, bytes calldata signature) external {
        Round storage r = _round(roundId);
        if (!r.signedMembers) revert BadSignature(msg.sender);
        bytes32 digest = MessageHashUtils.toEthSignedMessageHash(
            keccak256(abi.encode(block.chainid, address(this), roundId, msg.sender, memberIndex)));
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError || signer != r.coordinator) revert BadSignature(msg.sender);
        _register(r, roundId, maskKey, uint256(memberIndex) + 1);
    }

    /// @notice Deposits settlement tokens on the round's ledger (needs a prior ERC-20 approval).
    /// @param roundId the round.
    /// @param amount token base units.
    function deposit(uint256 roundId, uint256 amount) external nonReentrant {
        Round storage r = _round(roundId);
        _requireOpen(roundId, r);
        if (amount == 0) revert ZeroAmount();
        uint256 balance = _update(r, msg.sender, -int256(amount));
        emit Deposited(roundId, msg.sender, amount, balance);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Closes registration and opens the sharing step (rounds with dropout recovery) or
    ///         iteration 0 with the first public prices (coordinator only, before the registration
    ///         deadline plus the coordinator's window).
    /// @param roundId the round.
    /// @param prices0 the first price vector, one entry per element of the price band and inside it.
    function start(uint256 roundId, uint64[] calldata prices0) external {
        Round storage r = _round(roundId);
        _requireCoordinator(r);
        _requirePhase(r, roundId, Phase.Registering);
        uint64 late = r.deadline + r.windows.coordinator;
        if (block.number > late) revert DeadlinePassed(late);
        uint256 count = r.participantCount;
        if (count < MIN_PARTICIPANTS) revert TooFewParticipants(count, MIN_PARTICIPANTS);
        if (r.threshold >= count) revert TooFewParticipants(count, uint256(r.threshold) + 1);
        _checkPrices(r, prices0);
        r.prices = prices0;
        emit RoundStarted(roundId, 0, count, prices0);
        if (r.threshold != 0) {
            _setPhase(r, roundId, Phase.Sharing);
            _beginStep(r, roundId, Step.Submitting, r.windows.submission);
        } else {
            _beginIteration(r, roundId);
        }
    }

    /// @notice Posts the caller's shares of its mask secrets, each sealed to its holder, the
    ///         commitments to its sharing polynomials and its mask point of iteration 0 (the first
    ///         33 bytes), in the sharing step of a round with dropout recovery. Not interpreted on
    ///         chain beyond the point.
    /// @param roundId the round.
    /// @param material the mask point (33 bytes, compressed secp256k1), the Feldman commitments (2 x
    ///        threshold compressed points) and the sealed shares (docs/protocol.md, "Dropout recovery").
    function share(uint256 roundId, bytes calldata material) external {
        Round storage r = _round(roundId);
        _requirePhase(r, roundId, Phase.Sharing);
        _requireOnTime(r);
        Member storage m = r.members[msg.sender];
        if (m.position == 0) revert NotRegistered(msg.sender);
        if (m.shared) revert AlreadyShared(msg.sender);
        if (material.length > MAX_DATA_BYTES) revert SharesLength(material.length, MAX_DATA_BYTES);
        if (material.length < POINT_BYTES || !Secp256k1.isPoint(material[:POINT_BYTES])) revert MaskPointInvalid(msg.sender);
        m.shared = true;
        m.materialHash = bytes16(keccak256(material)); // a blame opening proves against its commitments
        m.nextPointHash = bytes16(keccak256(material[:POINT_BYTES]));
        uint16 shared = r.submissions + 1;
        r.submissions = shared;
        emit Shared(roundId, msg.sender, material);
        if (shared == r.active) _beginIteration(r, roundId);
    }

    /// @notice Submits this iteration's ciphertext, the commitment to the reveal vector, in rounds
    ///         with pair lanes the pad-encrypted messages to every other active participant and, in
    ///         rounds with dropout recovery, the mask point of the next iteration. Active
    ///         participants only, before the iteration's deadline.
    /// @param roundId the round.
    /// @param iteration the current iteration.
    /// @param ciphertext Paillier ciphertext, len(n^2) bytes: 1 < c < n^2, not a multiple of n, never
    ///        seen before in the round; empty in rounds without a key.
    /// @param commitment keccak256(abi.encode(roundId, iteration, participant, keccak256(abi.encodePacked(
    ///        int256[] values)), bytes32 salt)), values = the participant's full reveal (each within int64).
    /// @param pairMessages empty if the round has no pair lanes; else one block per other active
    ///        participant in registration order, each `pairLanes` 64-bit big-endian words, emitted in
    ///        `PairMessages` and not interpreted (nor part of the stored submission hash).
    /// @param nextPoint the participant's compressed secp256k1 mask point of iteration + 1 (rounds with
    ///        dropout recovery; else empty), emitted in `MaskPoint`.
    function submit(
        uint256 roundId,
        uint32 iteration,
        bytes calldata ciphertext,
        bytes32 commitment,
        bytes calldata pairMessages,
        bytes calldata nextPoint
    ) external {
        Round storage r = _rounds[roundId];
        Member storage m = _admitSubmission(r, roundId, iteration);
        bytes32 ctHash = _acceptCiphertext(r, ciphertext);
        m.submissionHash = bytes26(keccak256(abi.encodePacked(ctHash, commitment)));
        m.submittedIterationPlusOne = iteration + 1;
        emit Submitted(roundId, iteration, msg.sender, ctHash, commitment);
        _acceptExtras(r, roundId, iteration, pairMessages, nextPoint);
        uint16 submitted = r.submissions + 1;
        r.submissions = submitted;
        if (submitted == r.active) _closeSubmissions(r, roundId);
    }

    /// @notice After the deadline of the sharing step or of an iteration's submissions (anyone may
    ///         call): drops the active participants that did not share or submit, which must be
    ///         listed in registration order, and moves the round on. The dropped leave the round
    ///         for good and are settled by the mechanism's fallback. Below the privacy minimum the
    ///         round closes.
    /// @param roundId the round.
    /// @param missing every active participant that missed the step, in registration order.
    function advance(uint256 roundId, address[] calldata missing) external {
        Round storage r = _round(roundId);
        Phase phase = r.phase;
        if (phase != Phase.Sharing) _requirePhase(r, roundId, Phase.Iterating);
        if (r.step != Step.Submitting) revert WrongStep(roundId, r.step, Step.Submitting);
        uint64 deadline = r.deadline;
        if (block.number <= deadline) revert DeadlineNotPassed(deadline);
        uint32 k = r.iteration;
        bool sharing = phase == Phase.Sharing;
        uint256 last;
        for (uint256 i = 0; i < missing.length; ++i) {
            address who = missing[i];
            Member storage m = r.members[who];
            uint256 position = m.position;
            if (position <= last || m.droppedBeforePlusOne != 0) revert NotMissing(who);
            if (sharing ? m.shared : m.submittedIterationPlusOne == k + 1) revert NotMissing(who);
            last = position;
            m.droppedBeforePlusOne = sharing ? 1 : k + 1;
            emit Dropped(roundId, k, who, !sharing);
        }
        uint256 active = uint256(r.active) - missing.length;
        if (active != r.submissions) revert MissingCount(missing.length, uint256(r.active) - r.submissions);
        r.active = uint16(active);
        if (active < MIN_PARTICIPANTS || active <= r.threshold) _close(r, roundId, CloseReason.TooFewParticipants);
        else if (sharing) _beginIteration(r, roundId);
        else _closeSubmissions(r, roundId);
    }

    /// @notice Posts the caller's partial evaluations for removing this iteration's masks (rounds
    ///         with dropout recovery; participants that submitted in this iteration, before the
    ///         recovery deadline): for each neighbour, in registration order, its self-mask
    ///         soFar if it submitted, or its pair-mask partials if it dropped out now.
    /// @param roundId the round.
    /// @param iteration the current iteration.
    /// @param partials the concatenated compressed points, each followed by its 64-byte proof
    ///        (docs/protocol.md, "Dropout recovery").
    function recover(uint256 roundId, uint32 iteration, bytes calldata partials) external {
        Round storage r = _round(roundId);
        _requirePhase(r, roundId, Phase.Iterating);
        if (r.threshold == 0) revert NoRecovery(roundId);
        if (r.step != Step.Recovering) revert WrongStep(roundId, r.step, Step.Recovering);
        _requireOnTime(r);
        uint32 k = r.iteration;
        if (iteration != k) revert WrongIteration(iteration, k);
        Member storage m = r.members[msg.sender];
        if (m.submittedIterationPlusOne != k + 1) revert SubmissionMissing(msg.sender, k);
        if (m.recoveredIterationPlusOne == k + 1) revert AlreadyRecovered(msg.sender, k);
        if (partials.length > MAX_DATA_BYTES) revert SharesLength(partials.length, MAX_DATA_BYTES);
        m.recoveredIterationPlusOne = k + 1;
        uint16 done = r.recoveries + 1;
        r.recoveries = done;
        emit Recovered(roundId, k, msg.sender, partials);
        if (done == r.submissions) _beginStep(r, roundId, Step.Aggregating, r.windows.coordinator);
    }

    /// @notice Multiplies the next chunk of this iteration's submissions modulo n^2 (anyone may
    ///         call, once the submissions, and in rounds with recovery the recovery step, are over).
    ///         Runs in the RoundOpenings module.
    /// @param roundId the round.
    /// @param soFar the product of the earlier chunks, as emitted by `AggregationProgress` (empty
    ///        for the first chunk).
    /// @param ciphertexts the next submitted ciphertexts, in registration order.
    /// @param commitments their commitments.
    /// @return agg the product so far (after the last chunk: the aggregate), len(n^2) bytes.
    function aggregate(uint256 roundId, bytes calldata soFar, bytes[] calldata ciphertexts, bytes32[] calldata commitments)
        external
        returns (bytes memory agg)
    {
        (roundId, soFar, ciphertexts, commitments, agg);
        _delegate(openings);
    }

    /// @notice Publishes the decrypted aggregate of the current iteration and opens the next one
    ///         with new public prices (coordinator only, before its deadline). Runs in RoundOpenings.
    /// @param roundId the round.
    /// @param agg the aggregate ciphertext emitted by `Aggregated` (empty without a key).
    /// @param plaintext the decryption m, len(n) bytes, m < n (empty without a key).
    /// @param opening rho with agg == (1 + m*n) * rho^n mod n^2, 0 < rho < n, len(n) bytes (empty without a key).
    /// @param corrections per slot, the masks left in m (mod 2^B) that the recovery removes (rounds with
    ///        dropout recovery; else empty).
    /// @param nextPrices the price vector of the next iteration, inside the price band.
    /// @return sums the decoded slot sums (`slots` of them; none without a key).
    function publish(
        uint256 roundId,
        bytes calldata agg,
        bytes calldata plaintext,
        bytes calldata opening,
        uint64[] calldata corrections,
        uint64[] calldata nextPrices
    ) external returns (int64[] memory sums) {
        (roundId, agg, plaintext, opening, corrections, nextPrices, sums);
        _delegate(openings);
    }

    /// @notice Publishes the decrypted aggregate of the current iteration and makes the current
    ///         prices and iteration final (coordinator only, before its deadline); openings may be
    ///         challenged for `windows.challenge` blocks. Runs in RoundOpenings.
    /// @param roundId the round.
    /// @param agg the aggregate ciphertext (empty without a key).
    /// @param plaintext the decryption m (empty without a key).
    /// @param opening rho, 0 < rho < n (empty without a key).
    /// @param corrections the recovery's mask corrections (as in `publish`).
    /// @return sums the decoded slot sums (kept for settlement).
    function conclude(
        uint256 roundId,
        bytes calldata agg,
        bytes calldata plaintext,
        bytes calldata opening,
        uint64[] calldata corrections
    ) external returns (int64[] memory sums) {
        (roundId, agg, plaintext, opening, corrections, sums);
        _delegate(openings);
    }

    /// @notice Challenges (or continues the challenge of) a published opening (anyone may call,
    ///         until the challenge window after conclusion closes): computes rho^n mod n^2 in
    ///         `steps` chunks of 256 exponent bits per call, which keeps every call under the
    ///         per-transaction gas cap, and at the end checks agg == (1 + m n) rho^n. A false
    ///         opening closes the round (every deposit returned). Runs in RoundOpenings.
    /// @param roundId the round.
    /// @param iteration the iteration whose opening is challenged.
    /// @param published the iteration's aggregate || plaintext || opening (len(n^2) + 2 len(n) bytes),
    ///        as `Aggregated` and `Published` (or `Concluded`) emitted them.
    /// @param acc the accumulator after the steps done so far (empty to start a challenge).
    /// @param steps the number of 256-bit steps to run now.
    /// @return next the accumulator after this call (pass it to the next call).
    function challengeOpening(uint256 roundId, uint32 iteration, bytes calldata published, bytes calldata acc, uint8 steps)
        external
        returns (bytes memory next)
    {
        (roundId, iteration, published, acc, steps, next);
        _delegate(openings);
    }

    /// @notice Closes a round that is not settled without trading (coordinator only): nothing is
    ///         settled and every deposit can be withdrawn in full. Used for a run that did not
    ///         converge, or one that cannot go on.
    /// @param roundId the round.
    function close(uint256 roundId) external {
        Round storage r = _round(roundId);
        _requireCoordinator(r);
        _requireOpen(roundId, r);
        _close(r, roundId, CloseReason.ByCoordinator);
    }

    /// @notice Cancels a round whose coordinator missed its deadline (anyone may call): not
    ///         started in time, not published or concluded in time, or not settled in time.
    ///         Nothing is settled and every deposit can be withdrawn in full.
    /// @param roundId the round.
    function cancel(uint256 roundId) external {
        Round storage r = _round(roundId);
        _requireOpen(roundId, r);
        uint64 late = coordinatorDeadline(roundId);
        if (block.number <= late) revert DeadlineNotPassed(late);
        _close(r, roundId, CloseReason.CoordinatorLate);
    }

    /// @notice Settles a concluded round once its challenge window has closed (anyone may call):
    ///         checks every participant's reveal against its final commitment (a dropped
    ///         participant's against its last one, or none) and, with a key, the first `slots`
    ///         revealed values of those that stayed against the decrypted sums; asks the round's
    ///         rule for the payments and books them. Runs in the RoundSettlement module.
    /// @param roundId the round.
    /// @param values the reveals of all participants, registration order, one after the other, each
    ///        of the rule's reveal length (participant i's value j at i * length + j), within int64;
    ///        zeros for a dropped participant without a reveal.
    /// @param salts the salt of each participant's commitment (zero: a dropped participant without a reveal).
    /// @param ciphertextHashes keccak256 of each participant's ciphertext of that commitment (of "" without a key).
    function settle(
        uint256 roundId,
        int256[] calldata values,
        bytes32[] calldata salts,
        bytes32[] calldata ciphertextHashes
    ) external nonReentrant {
        (roundId, values, salts, ciphertextHashes);
        _delegate(settlement);
    }

    /// @notice After a sum mismatch at settlement (rounds with dropout recovery): the caller, a
    ///         participant that stayed to the end, opens its final ciphertext and proves its masks
    ///         of that iteration, before the blame deadline (`BlameStarted`). Whoever does not
    ///         clear itself is slashed at settlement. The opening is challengeable like an
    ///         aggregate's (`challengeOpening` with iteration 2^31 + position). Runs in RoundSettlement.
    /// @param roundId the round.
    /// @param values its reveal (the final commitment's values).
    /// @param salt the commitment's salt.
    /// @param opened its final ciphertext || its decryption (masked, packed, len(n) bytes) || rho
    ///        (0 < rho < n), as `challengeOpening`'s `published`.
    /// @param masks its keys, its mask point, its self mask and one pair mask per neighbour, each
    ///        with its proof (docs/protocol.md, "Blame").
    function openBlame(uint256 roundId, int256[] calldata values, bytes32 salt, bytes calldata opened, bytes calldata masks)
        external
    {
        (roundId, values, salt, opened, masks);
        _delegate(settlement);
    }

    /// @notice Takes the caller's whole ledger balance out of the round (before the round starts,
    ///         after settlement or after the round was closed or cancelled).
    /// @param roundId the round.
    function withdraw(uint256 roundId) external nonReentrant {
        Round storage r = _round(roundId);
        Phase phase = r.phase;
        if (phase != Phase.Settled && phase != Phase.Closed) _requirePhase(r, roundId, Phase.Registering);
        uint256 amount = r.balances[msg.sender];
        if (amount == 0) revert ZeroAmount();
        _update(r, msg.sender, int256(amount));
        emit Withdrawn(roundId, msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ------------------------------------------------------------------ views

    /// @notice Summary of a round.
    /// @param roundId the round.
    /// @return info phase, step, deadline, iteration, coordinator, rule and parameters.
    function roundInfo(uint256 roundId) external view returns (RoundInfo memory info) {
        Round storage r = _round(roundId);
        info = RoundInfo({
            phase: r.phase,
            step: r.step,
            iteration: r.iteration,
            deadline: r.deadline,
            coordinator: r.coordinator,
            gridAccount: r.gridAccount,
            rule: address(r.rule),
            parentRoundId: r.parentRoundId,
            keyData: r.keyData,
            participantCount: r.participantCount,
            active: r.active,
            submissions: r.submissions,
            recoveries: r.recoveries,
            slots: r.slots,
            slotBits: r.slotBits,
            slotWidth: r.slotWidth,
            maxIterations: r.maxIterations,
            aggregated: r.aggregatedIterationPlusOne == r.iteration + 1,
            modulusBytes: uint256(r.nWords) * 32,
            pairLanes: r.pairLanes,
            allowList: r.allowList,
            signedMembers: r.signedMembers,
            threshold: r.threshold,
            windows: r.windows,
            challengeUntil: r.challengeUntil,
            challengeIterationPlusOne: r.challengeIterationPlusOne
        });
    }

    /// @notice The last block at which the coordinator's next move is on time; after it anyone may
    ///         `cancel` (never, while participants are the ones to act).
    /// @param roundId the round.
    /// @return late the block number.
    function coordinatorDeadline(uint256 roundId) public view returns (uint64 late) {
        Round storage r = _round(roundId);
        Phase phase = r.phase;
        uint64 window = r.windows.coordinator;
        if (phase == Phase.Registering) return r.deadline + window;
        if (phase == Phase.Concluded) return r.challengeUntil + window;
        if (phase == Phase.Iterating && r.step == Step.Aggregating) return r.deadline;
        if (phase == Phase.Iterating && r.step == Step.Recovering) return r.deadline + window;
        return type(uint64).max;
    }

    /// @notice Registered participants in registration order with their mask keys.
    /// @param roundId the round.
    /// @return accounts participant addresses.
    /// @return maskKeys their X25519 public keys.
    function participants(uint256 roundId) external view returns (address[] memory accounts, bytes32[] memory maskKeys) {
        Round storage r = _round(roundId);
        return (r.participants, r.maskKeys);
    }

    /// @notice The current (after conclusion: final) public price vector.
    /// @param roundId the round.
    /// @return current one price per element of the price band.
    function prices(uint256 roundId) external view returns (uint64[] memory current) {
        return _round(roundId).prices;
    }

    /// @notice The price band of a round.
    /// @param roundId the round.
    /// @return floor lower bounds.
    /// @return cap upper bounds.
    function priceBand(uint256 roundId) external view returns (uint64[] memory floor, uint64[] memory cap) {
        Round storage r = _round(roundId);
        return (r.priceFloor, r.priceCap);
    }

    /// @notice The decrypted slot sums the round concluded with.
    /// @param roundId the round.
    /// @return sums one sum per slot (none without a key).
    function finalSums(uint256 roundId) external view returns (int64[] memory sums) {
        return _round(roundId).finalSums;
    }

    /// @notice The Paillier modulus n of a round.
    /// @param roundId the round.
    /// @return n big-endian bytes (empty without a key).
    function modulus(uint256 roundId) external view returns (bytes memory n) {
        Round storage r = _round(roundId);
        if (r.keyData == address(0)) return n;
        return _loadN(r.keyData, uint256(r.nWords) * 32);
    }

    /// @notice The terms a round was created with.
    /// @param roundId the round.
    /// @return data the terms exactly as given to `createRound`.
    function terms(uint256 roundId) external view returns (bytes memory data) {
        return _loadData(_round(roundId).termsData);
    }

    /// @notice The member index of an account in a round's allow-list.
    /// @param roundId the round.
    /// @param account the account.
    /// @return indexPlusOne its position in `members` plus one (0: not a member).
    function memberIndex(uint256 roundId, address account) external view returns (uint256 indexPlusOne) {
        return _round(roundId).allowedPlusOne[account];
    }

    /// @notice The stored state of a participant.
    /// @param roundId the round.
    /// @param account the participant.
    /// @return m its submission hash, position (0: not registered), latest iteration submitted plus
    ///         one, first iteration missed plus one (0: active), latest iteration recovered plus one,
    ///         member index plus one and whether it shared.
    function member(uint256 roundId, address account) external view returns (Member memory m) {
        return _rounds[roundId].members[account];
    }

    /// @notice An account's ledger balance in a round.
    /// @param roundId the round.
    /// @param account the account.
    /// @return balance token base units.
    function balanceOf(uint256 roundId, address account) external view returns (uint256 balance) {
        return _rounds[roundId].balances[account];
    }

    /// @notice The participant limit of a round: the slot headroom W - B bits must hold the count
    ///         (65,535 without a key).
    /// @param roundId the round.
    /// @return max the largest number of participants.
    function maxParticipants(uint256 roundId) public view returns (uint256 max) {
        Round storage r = _round(roundId);
        uint256 headroom = r.keyData == address(0) ? 16 : uint256(r.slotWidth) - r.slotBits;
        max = headroom >= 16 ? type(uint16).max : (uint256(1) << headroom) - 1;
    }

    /// @notice The settlement of a round for given reveal values, computed by its rule without
    ///         touching state (uses the current, after conclusion final, prices).
    /// @param roundId the round.
    /// @param values the reveals, participant-major, each of the rule's reveal length, within int64.
    /// @return amounts per participant, positive = paid by it, token base units.
    /// @return payees the other accounts the settlement pays or charges.
    /// @return payeeAmounts their amounts, positive = paid by them.
    /// @return bills per participant its bill items (or none).
    function quote(uint256 roundId, int256[] calldata values)
        external
        view
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts, int256[][] memory bills)
    {
        (bool ok, bytes memory ret) = address(this).staticcall(abi.encodeCall(this.quoteByDelegate, (roundId, values)));
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
        return abi.decode(ret, (int256[], address[], int256[], int256[][]));
    }

    /// @notice `quote`'s static self-call into the settlement module (this contract only).
    /// @param roundId the round.
    /// @param values the reveals.
    function quoteByDelegate(uint256 roundId, int256[] calldata values) external {
        if (msg.sender != address(this)) revert NotCoordinator(msg.sender, address(this));
        (roundId, values);
        _delegate(settlement);
    }

    // ------------------------------------------------------------------ internals

    /// @dev Runs `module` on this contract's storage with this call's calldata; returns or reverts with its result.
    function _delegate(address module) internal {
        assembly ("memory-safe") {
            let p := mload(0x40)
            calldatacopy(p, 0, calldatasize())
            let ok := delegatecall(gas(), module, p, calldatasize(), 0, 0)
            returndatacopy(p, 0, returndatasize())
            if iszero(ok) { revert(p, returndatasize()) }
            return(p, returndatasize())
        }
    }

    function _register(Round storage r, uint256 roundId, bytes32 maskKey, uint256 indexPlusOne) internal {
        _requirePhase(r, roundId, Phase.Registering);
        _requireOnTime(r);
        if (msg.sender == r.gridAccount) revert GridAccountCannotRegister(msg.sender);
        Member storage m = r.members[msg.sender];
        if (m.position != 0) revert AlreadyRegistered(msg.sender);
        _checkMaskKey(maskKey);
        if (r.maskKeySeen[maskKey]) revert MaskKeyRepeated(maskKey);
        r.maskKeySeen[maskKey] = true;
        uint256 count = r.participantCount;
        uint256 max = maxParticipants(roundId);
        if (count >= max) revert TooManyParticipants(max);
        uint16 position = uint16(count + 1);
        m.position = position;
        m.memberIndexPlusOne = uint32(indexPlusOne);
        r.participantCount = position;
        r.active = position;
        r.participants.push(msg.sender);
        r.maskKeys.push(maskKey);
        emit Registered(roundId, msg.sender, position, maskKey);
    }

    /// @dev The caller may submit now: an active participant, the current iteration, on time, once.
    function _admitSubmission(Round storage r, uint256 roundId, uint32 iteration) internal view returns (Member storage m) {
        if (!r.exists) revert UnknownRound(roundId);
        if (r.phase != Phase.Iterating) revert WrongPhase(roundId, r.phase, Phase.Iterating);
        if (r.step != Step.Submitting) revert WrongStep(roundId, r.step, Step.Submitting);
        _requireOnTime(r);
        uint32 current = r.iteration;
        if (iteration != current) revert WrongIteration(iteration, current);
        m = r.members[msg.sender];
        if (m.position == 0) revert NotRegistered(msg.sender);
        if (m.droppedBeforePlusOne != 0) revert NotActive(msg.sender);
        if (m.submittedIterationPlusOne == current + 1) revert AlreadySubmitted(msg.sender, current);
    }

    /// @dev A ciphertext of the round's length; with a key a unit-candidate never seen in the round
    ///      (remembered). Its hash.
    function _acceptCiphertext(Round storage r, bytes calldata ciphertext) internal returns (bytes32 ctHash) {
        uint256 expected = uint256(r.nWords) * 64;
        if (ciphertext.length != expected) revert CiphertextLength(ciphertext.length, expected);
        ctHash = keccak256(ciphertext);
        address keyData = r.keyData;
        if (keyData == address(0)) return ctHash;
        _checkCiphertext(keyData, ciphertext);
        if (r.ciphertextSeen[ctHash]) revert CiphertextRepeated(msg.sender, ctHash);
        r.ciphertextSeen[ctHash] = true;
    }

    /// @dev Opens the current iteration's submissions (the first: from Registering or Sharing).
    function _beginIteration(Round storage r, uint256 roundId) internal {
        if (r.phase != Phase.Iterating) _setPhase(r, roundId, Phase.Iterating);
        r.submissions = 0;
        _beginStep(r, roundId, Step.Submitting, r.windows.submission);
    }

    /// @dev Every active participant submitted (or the late were dropped): recovery, or aggregation.
    function _closeSubmissions(Round storage r, uint256 roundId) internal {
        if (r.threshold != 0) {
            r.recoveries = 0;
            _beginStep(r, roundId, Step.Recovering, r.windows.recovery);
        } else {
            _beginStep(r, roundId, Step.Aggregating, r.windows.coordinator);
        }
    }

    /// @dev Neither settled nor closed.
    function _requireOpen(uint256 roundId, Round storage r) internal view {
        Phase phase = r.phase;
        if (phase == Phase.Settled) revert AlreadySettled(roundId);
        if (phase == Phase.Closed) revert RoundClosed(roundId);
    }

    /// @dev Checks and emits submit's pair messages (one block per other active participant) and,
    ///      in rounds with recovery, its next mask point.
    function _acceptExtras(
        Round storage r,
        uint256 roundId,
        uint32 iteration,
        bytes calldata pairMessages,
        bytes calldata nextPoint
    ) internal {
        uint256 lanes = r.pairLanes;
        uint256 expected = lanes == 0 ? 0 : (uint256(r.active) - 1) * lanes * 8;
        if (pairMessages.length != expected) revert PairMessagesLength(pairMessages.length, expected);
        if (expected != 0) emit PairMessages(roundId, iteration, msg.sender, pairMessages);
        bool recovery = r.threshold != 0;
        if (recovery ? !Secp256k1.isPoint(nextPoint) : nextPoint.length != 0) revert MaskPointInvalid(msg.sender);
        if (recovery) {
            Member storage m = r.members[msg.sender];
            (m.pointHash, m.nextPointHash) = (m.nextPointHash, bytes16(keccak256(nextPoint)));
            emit MaskPoint(roundId, iteration + 1, msg.sender, nextPoint);
        }
    }

    /// @dev X25519 public keys that are zero or of small order (libsodium's list, top bit cleared)
    ///      make every key agreement with them fail or leak: refused.
    function _checkMaskKey(bytes32 key) internal pure {
        uint256 u = uint256(key) & ~uint256(0x80); // the last byte's top bit is ignored by X25519
        if (
            u == 0 || u == 0x0100000000000000000000000000000000000000000000000000000000000000
                || u == 0xe0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800
                || u == 0x5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157
                || u == 0xecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
                || u == 0xedffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
                || u == 0xeeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
        ) revert MaskKeyRejected(key);
    }

    /// @dev A keyed round's ciphertext: 1 < c < n^2 and c not a multiple of n (such c are no units
    ///      mod n^2 and make every later decryption junk). `c mod n` is one MODEXP with exponent 1.
    function _checkCiphertext(address keyData, bytes calldata c) internal view {
        uint256 L2 = c.length;
        uint256 L = L2 / 2;
        bool below;
        bool one;
        bool multiple;
        assembly ("memory-safe") {
            let p := mload(0x40)
            // c < n^2 (n^2 at code offset 1), c == 1
            extcodecopy(keyData, p, 1, L2)
            let high := 0
            let decided := 0
            for { let i := 0 } lt(i, L2) { i := add(i, 32) } {
                let x := calldataload(add(c.offset, i))
                if lt(i, sub(L2, 32)) { high := or(high, x) }
                if iszero(decided) {
                    let y := mload(add(p, i))
                    if iszero(eq(x, y)) {
                        below := lt(x, y)
                        decided := 1
                    }
                }
            }
            let low := calldataload(add(c.offset, sub(L2, 32)))
            one := and(iszero(high), eq(low, 1))
            let zero := and(iszero(high), iszero(low))
            below := and(below, iszero(zero))
            // c mod n: MODEXP input [L2][1][L] c 0x01 n
            mstore(p, L2)
            mstore(add(p, 32), 1)
            mstore(add(p, 64), L)
            calldatacopy(add(p, 96), c.offset, L2)
            mstore8(add(add(p, 96), L2), 1)
            extcodecopy(keyData, add(add(p, 97), L2), add(1, L2), L)
            let out := add(add(add(p, 97), L2), L)
            if iszero(staticcall(gas(), 0x05, p, add(97, add(L2, L)), out, L)) { revert(0, 0) }
            let any := 0
            for { let i := 0 } lt(i, L) { i := add(i, 32) } { any := or(any, mload(add(out, i))) }
            multiple := iszero(any)
        }
        if (!below) revert CiphertextOutOfRange(msg.sender);
        if (one) revert CiphertextIsOne(msg.sender);
        if (multiple) revert CiphertextMultipleOfN(msg.sender);
    }

    function _loadN(address keyData, uint256 L) internal view returns (bytes memory n) {
        n = new bytes(L);
        assembly ("memory-safe") {
            extcodecopy(keyData, add(n, 32), add(1, mul(2, L)), L)
        }
    }
}
