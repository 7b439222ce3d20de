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
import {RoundDisputes} from "./RoundDisputes.sol";
import {CloseReason, DropReason, Fault, Member, Phase, Round, RoundParams, Step, Windows} from "./RoundTypes.sol";

/// @title PrivateRounds
/// @notice The generic private round of every gridshare mechanism: membership (an allow-list, the
///         creator's signature per participant, or open) with each participant's public key and
///         first mask point, locked collateral and a coordinator's bond, per-iteration submissions
///         (a Paillier ciphertext, or none in rounds without a key, a hiding commitment, optional
///         pair messages, the next mask point) under deadlines, attempts repeated without those
///         that missed one, on-chain homomorphic aggregation in chunks, publication of decrypted
///         aggregates whose openings anyone may challenge, disputes that name whoever submitted
///         masks that do not cancel, conclusion, each participant's own reveal, settlement through
///         the round's stateless rule contract (after a blame step when the reveals do not add
///         up), cancellation when the coordinator is late, and a per-round token ledger. Rounds may
///         nest (a parent round id). See docs/protocol.md.
/// @dev Every phase change passes through `_setPhase`, every ledger move through `_update`, every
///      forfeit through `_forfeit` (RoundStorage). Aggregation, publication and challenges run in
///      the RoundOpenings module, disputes and blame openings in RoundDisputes, reveals and the
///      settlement in RoundSettlement (each by DELEGATECALL, with the caller's calldata). Every
///      event and error is declared once, in IPrivateRounds. Sign convention of amounts:
///      positive = paid by the account.
contract PrivateRounds is RoundStorage, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Read-only summary of a round.
    struct RoundInfo {
        Phase phase;
        Step step;
        uint32 iteration;
        uint16 attempt;
        uint64 deadline;
        address coordinator;
        address gridAccount;
        address rule;
        uint256 parentRoundId;
        address keyData;
        uint16 participantCount;
        uint16 active;
        uint16 submissions;
        uint16 revealed;
        uint16 slots;
        uint8 slotBits;
        uint16 slotWidth;
        uint32 maxIterations;
        bool aggregated;
        uint256 modulusBytes;
        uint16 pairLanes;
        bool allowList;
        bool signedMembers;
        Windows windows;
        uint256 collateral;
        uint256 bond;
        uint256 forfeited;
        uint64 challengeUntil;
        uint64 revealUntil;
        uint64 blameUntil;
        uint256 challengeKeyPlusOne;
    }

    uint256 internal constant POINT_BYTES = 33; // a compressed secp256k1 point

    /// @notice The settlement token.
    IERC20 public immutable token;
    /// @notice The stateless Paillier arithmetic.
    PaillierMath public immutable paillier;
    /// @notice The module for aggregation, publication and challenges (run by DELEGATECALL).
    address public immutable openings;
    /// @notice The module for reveals and the settlement (run by DELEGATECALL).
    address public immutable settlement;
    /// @notice The module for disputes and blame openings (run by DELEGATECALL).
    address public immutable disputes;

    /// @dev The modules are deployed first and passed in (created here, their code would push this
    ///      contract's creation code past EIP-3860's 49,152 bytes). The audit checks that each
    ///      address runs the compiled code of its module.
    /// @param token_ the ERC-20 settlement token.
    /// @param paillier_ a PaillierMath.
    /// @param openings_ a RoundOpenings created with `paillier_`.
    /// @param settlement_ a RoundSettlement.
    /// @param disputes_ a RoundDisputes created with `paillier_`.
    constructor(
        IERC20 token_,
        PaillierMath paillier_,
        RoundOpenings openings_,
        RoundSettlement settlement_,
        RoundDisputes disputes_
    ) {
        if (openings_.paillier() != paillier_ || disputes_.paillier() != paillier_) revert BadParameters("modules");
        token = token_;
        paillier = paillier_;
        openings = address(openings_);
        settlement = address(settlement_);
        disputes = address(disputes_);
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
    /// @param keys the participant's public key A = a G and, in a round with a Paillier key, its
    ///        mask point of iteration 0, Y(0) = a H_0 (compressed secp256k1 points, x below the
    ///        group order); only A in a round without a key but with pair lanes; else empty.
    function register(uint256 roundId, bytes calldata keys) external {
        Round storage r = _round(roundId);
        if (r.signedMembers) revert BadSignature(msg.sender);
        uint256 indexPlusOne = r.allowList ? r.allowedPlusOne[msg.sender] : uint256(r.participantCount) + 1;
        if (indexPlusOne == 0) revert NotMember(msg.sender);
        _register(r, roundId, keys, indexPlusOne);
    }

    /// @notice Joins a round with signed membership, showing the creator's signature (EIP-191) of
    ///         keccak256(abi.encode(chainid, this contract, roundId, participant, memberIndex)).
    /// @param roundId the round.
    /// @param keys the participant's keys (as in `register`).
    /// @param memberIndex the participant's index among the members the creator admits.
    /// @param signature the creator's signature.
    function registerSigned(uint256 roundId, bytes calldata keys, uint16 memberIndex, bytes calldata signature) external {
        Round storage r = _round(roundId);
        if (!r.signedMembers) revert BadSignature(msg.sender);
        bytes32 digest = MessageHashUtils.toEthSignedMessageHash(
            keccak256(abi.encode(block.chainid, address(this), roundId, msg.sender, memberIndex)));
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError || signer != r.coordinator) revert BadSignature(msg.sender);
        _register(r, roundId, keys, uint256(memberIndex) + 1);
    }

    /// @notice Deposits settlement tokens on the round's ledger (needs a prior ERC-20 approval).
    ///         Deposits stay locked until the round is settled or closed.
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

    /// @notice Closes registration and opens iteration 0 with the first public prices
    ///         (coordinator only, before the registration deadline plus the coordinator's window,
    ///         with its bond on the ledger). Participants whose deposit is below the round's
    ///         collateral are dropped; at least MIN_PARTICIPANTS must remain.
    /// @param roundId the round.
    /// @param prices0 the first price vector, one entry per element of the price band and inside it.
    function start(uint256 roundId, uint64[] calldata prices0) external {
        Round storage r = _round(roundId);
        _requireCoordinator(r);
        _requirePhase(r, roundId, Phase.Registering);
        uint64 late = r.deadline + r.windows.coordinator;
        if (block.number > late) revert DeadlinePassed(late);
        uint256 held = r.balances[msg.sender];
        if (held < r.bond) revert InsufficientDeposit(msg.sender, held, r.bond);
        address[] storage parts = r.participants;
        uint256 collateral = r.collateral;
        for (uint256 i = 0; i < parts.length; ++i) {
            if (r.balances[parts[i]] < collateral) _drop(r, roundId, parts[i], DropReason.NoCollateral);
        }
        uint256 count = r.active;
        if (count < MIN_PARTICIPANTS) revert TooFewParticipants(count, MIN_PARTICIPANTS);
        _checkPrices(r, prices0);
        r.prices = prices0;
        emit RoundStarted(roundId, 0, count, prices0);
        _beginAttempt(r, roundId);
    }

    /// @notice Submits this iteration's ciphertext, the commitment to the reveal vector, in rounds
    ///         with pair lanes the pad-encrypted messages to every other active participant and, in
    ///         rounds with a key, the mask point of the next iteration. Active participants only,
    ///         once per attempt, before the attempt's deadline.
    /// @param roundId the round.
    /// @param iteration the current iteration.
    /// @param ciphertext Paillier ciphertext, len(n^2) bytes: 1 < c < n^2, not a multiple of n;
    ///        empty in rounds without a key.
    /// @param commitment keccak256(abi.encode(roundId, iteration, participant, keccak256(abi.encodePacked(
    ///        int256[] values)), bytes32 salt)), values = the participant's full reveal (each within int64).
    /// @param pairMessages empty if the round has no pair lanes; else one block per other active
    ///        participant in registration order, each `pairLanes` 64-bit big-endian words, emitted in
    ///        `PairMessages` and not interpreted (nor part of the stored submission hash).
    /// @param nextPoint the participant's compressed secp256k1 mask point of iteration + 1, Y(k+1) =
    ///        a H_{k+1} (rounds with a key; else empty), emitted in `MaskPoint`.
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
        bool first = m.submittedIterationPlusOne != iteration + 1; // the first attempt it submits in
        m.submissionHash = bytes24(keccak256(abi.encodePacked(ctHash, commitment)));
        m.submittedIterationPlusOne = iteration + 1;
        m.submittedAttempt = r.attempt;
        emit Submitted(roundId, iteration, msg.sender, r.attempt, ctHash, commitment);
        _acceptExtras(r, roundId, iteration, pairMessages, nextPoint, m, first);
        uint16 submitted = r.submissions + 1;
        r.submissions = submitted;
        if (submitted == r.active) _beginStep(r, roundId, Step.Aggregating, r.windows.coordinator);
    }

    /// @notice After the deadline of a submission attempt or of a dispute (anyone may call): drops
    ///         the active participants that did not submit (did not open, in a dispute), which
    ///         must be listed in registration order, and, after a dispute, every culprit it proved;
    ///         then the iteration is tried again by the others. The dropped leave the round for
    ///         good and are settled by the mechanism's fallback. Below the privacy minimum the
    ///         round closes; a dispute that named nobody closes it too. Runs in RoundOpenings.
    /// @param roundId the round.
    /// @param missing every active participant that missed the step, in registration order.
    function advance(uint256 roundId, address[] calldata missing) external {
        (roundId, missing);
        _delegate(openings);
    }

    /// @notice Multiplies the next chunk of the attempt's submissions modulo n^2 (anyone may call,
    ///         once every active participant submitted). Runs in RoundOpenings.
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

    /// @notice Publishes the decrypted aggregate of the current attempt, whose check slot must be
    ///         zero (the masks cancelled), and opens the next iteration with new public prices
    ///         (coordinator only, before its deadline). Runs in RoundOpenings.
    /// @param roundId the round.
    /// @param agg the aggregate ciphertext emitted by `Aggregated` (empty without a key).
    /// @param plaintext the decryption m, len(n) bytes, m < n (empty without a key).
    /// @param opening rho with agg == (1 + m*n) * rho^n mod n^2, 0 < rho < n, len(n) bytes (empty without a key).
    /// @param nextPrices the price vector of the next iteration, inside the price band.
    /// @return sums the decoded slot sums (`slots` of them; none without a key).
    function publish(
        uint256 roundId,
        bytes calldata agg,
        bytes calldata plaintext,
        bytes calldata opening,
        uint64[] calldata nextPrices
    ) external returns (int64[] memory sums) {
        (roundId, agg, plaintext, opening, nextPrices, sums);
        _delegate(openings);
    }

    /// @notice Publishes the decrypted aggregate of the current attempt (check slot zero) and makes
    ///         the current prices and iteration final (coordinator only, before its deadline); the
    ///         opening may be challenged for `windows.challenge` blocks, then every participant
    ///         reveals. Runs in RoundOpenings.
    /// @param roundId the round.
    /// @param agg the aggregate ciphertext (empty without a key).
    /// @param plaintext the decryption m (empty without a key).
    /// @param opening rho, 0 < rho < n (empty without a key).
    /// @return sums the decoded slot sums (kept for settlement).
    function conclude(uint256 roundId, bytes calldata agg, bytes calldata plaintext, bytes calldata opening)
        external
        returns (int64[] memory sums)
    {
        (roundId, agg, plaintext, opening, sums);
        _delegate(openings);
    }

    /// @notice Publishes a decrypted aggregate whose check slot is not zero: some submission's masks
    ///         did not cancel (a copy, a re-randomised copy, a made-up encryption, a false mask
    ///         point). Opens the dispute in which every submitter opens its submission
    ///         (`openCheck`) and then anyone accuses a neighbour whose check value its own proof
    ///         contradicts (`accuse`); after it `advance` drops the culprits and the iteration is
    ///         tried again. In a round whose openings are unchecked the round closes instead
    ///         (coordinator only, before its deadline). Runs in RoundOpenings.
    /// @param roundId the round.
    /// @param agg the aggregate ciphertext.
    /// @param plaintext the decryption m.
    /// @param opening rho, 0 < rho < n.
    function dispute(uint256 roundId, bytes calldata agg, bytes calldata plaintext, bytes calldata opening) external {
        (roundId, agg, plaintext, opening);
        _delegate(openings);
    }

    /// @notice Challenges (or continues the challenge of) a posted opening (anyone may call, within
    ///         its window): computes rho^n mod n^2 in `steps` chunks of 256 exponent bits per call,
    ///         which keeps every call under the per-transaction gas cap, and at the end checks
    ///         c == (1 + m n) rho^n. A false decryption of the coordinator closes the round and
    ///         forfeits its bond; a participant's false opening makes it a culprit. Runs in RoundOpenings.
    /// @param roundId the round.
    /// @param key the opening challenged: (iteration << 16 | attempt) for a decryption, as
    ///        `RoundStorage` forms the keys of dispute and blame openings.
    /// @param published the ciphertext || plaintext || opening (len(n^2) + 2 len(n) bytes), as posted.
    /// @param acc the accumulator after the steps done so far (empty to start a challenge).
    /// @param steps the number of 256-bit steps to run now.
    /// @return next the accumulator after this call (pass it to the next call).
    function challengeOpening(uint256 roundId, uint256 key, bytes calldata published, bytes calldata acc, uint8 steps)
        external
        returns (bytes memory next)
    {
        (roundId, key, published, acc, steps, next);
        _delegate(openings);
    }

    /// @notice In a dispute (openings window): the caller, a submitter of the disputed attempt,
    ///         opens its submission: its ciphertext with its masked plaintext and rho, and the
    ///         check-slot value of its mask with each active neighbour, which must add up (signed)
    ///         to its plaintext's check slot. Runs in RoundDisputes.
    /// @param roundId the round.
    /// @param commitment its submission's commitment.
    /// @param opened its ciphertext || plaintext || rho (len(n^2) + 2 len(n) bytes).
    /// @param checks per active neighbour in registration order, its pair mask's check-slot value (mod 2^B).
    function openCheck(uint256 roundId, bytes32 commitment, bytes calldata opened, uint64[] calldata checks) external {
        (roundId, commitment, opened, checks);
        _delegate(disputes);
    }

    /// @notice In a dispute: the caller, who opened, proves its pair mask with `accused` (who
    ///         opened and claims another check value): its key, its mask point with its proof
    ///         against H_k, the accused's mask point and their pair point with its proof. The
    ///         accused becomes a culprit and forfeits its deposit. Runs in RoundDisputes.
    /// @param roundId the round.
    /// @param accused the neighbour whose claim differs.
    /// @param mine the caller's check values as it opened them.
    /// @param theirs the accused's check values as it opened them.
    /// @param proof A || Y_i(k) || proof || Y_j(k) || P || proof (docs/protocol.md, "Disputes").
    function accuse(uint256 roundId, address accused, uint64[] calldata mine, uint64[] calldata theirs, bytes calldata proof)
        external
    {
        (roundId, accused, mine, theirs, proof);
        _delegate(disputes);
    }

    /// @notice After conclusion (once the challenge window closed, until the reveal deadline): the
    ///         caller reveals the values of its final commitment (a dropped participant: of its
    ///         last one), each within int64 and its encrypted values within the slot bound. Runs
    ///         in RoundSettlement.
    /// @param roundId the round.
    /// @param values its reveal (the rule's reveal length).
    /// @param salt the commitment's salt.
    /// @param ciphertextHash keccak256 of the ciphertext submitted with that commitment.
    function reveal(uint256 roundId, int256[] calldata values, bytes32 salt, bytes32 ciphertextHash) external {
        (roundId, values, salt, ciphertextHash);
        _delegate(settlement);
    }

    /// @notice Settles a concluded round after the reveals (anyone may call; it holds no secret):
    ///         checks every reveal against the one revealed, the reveals of those that stayed
    ///         against the decrypted sums (a mismatch or a withheld reveal starts the blame step
    ///         instead), asks the round's rule for the payments and books them. Runs in RoundSettlement.
    /// @param roundId the round.
    /// @param values the reveals, registration order, one after the other (participant i's value j
    ///        at i * length + j); zeros for a participant that revealed nothing.
    /// @param ciphertextHashes per participant the ciphertext hash it revealed with (zero: none).
    function settle(uint256 roundId, int256[] calldata values, bytes32[] calldata ciphertextHashes) external nonReentrant {
        (roundId, values, ciphertextHashes);
        _delegate(settlement);
    }

    /// @notice In a blame step: the caller, a participant that stayed and revealed, opens its final
    ///         ciphertext and proves its masks of the final attempt, before the blame deadline.
    ///         Whoever does not clear itself is settled by the fallback (and, proven a cheat,
    ///         forfeits). The opening is challengeable. Runs in RoundDisputes.
    /// @param roundId the round.
    /// @param values its reveal.
    /// @param opened its final ciphertext || its decryption (masked, packed, len(n) bytes) || rho.
    /// @param masks its key, its mask point and one pair mask per neighbour, each with its proof
    ///        (docs/protocol.md, "Blame").
    function openBlame(uint256 roundId, int256[] calldata values, bytes calldata opened, bytes calldata masks) external {
        (roundId, values, opened, masks);
        _delegate(disputes);
    }

    /// @notice Closes a round that has not concluded without trading (coordinator only): nothing is
    ///         settled and every deposit can be withdrawn, less what culprits forfeited. Used for a
    ///         run that did not converge, or one that cannot go on.
    /// @param roundId the round.
    function close(uint256 roundId) external {
        Round storage r = _round(roundId);
        _requireCoordinator(r);
        _requireOpen(roundId, r);
        if (r.phase == Phase.Concluded) revert WrongPhase(roundId, Phase.Concluded, Phase.Iterating);
        _close(r, roundId, CloseReason.ByCoordinator);
    }

    /// @notice Cancels a round whose coordinator missed its deadline (anyone may call): not started
    ///         in time or not published, concluded or disputed in time (the coordinator forfeits its
    ///         bond), or concluded and not settled in time. Nothing is settled and every deposit
    ///         can be withdrawn.
    /// @param roundId the round.
    function cancel(uint256 roundId) external {
        Round storage r = _round(roundId);
        _requireOpen(roundId, r);
        uint64 late = coordinatorDeadline(roundId);
        if (block.number <= late) revert DeadlineNotPassed(late);
        if (r.phase == Phase.Concluded) {
            _close(r, roundId, CloseReason.NotSettled);
            return;
        }
        if (r.participantCount != 0) _forfeit(r, roundId, r.coordinator, Fault.CoordinatorLate); // it kept someone waiting
        _close(r, roundId, CloseReason.CoordinatorLate);
    }

    /// @notice Takes the caller's whole ledger balance out of a settled or closed round.
    /// @param roundId the round.
    function withdraw(uint256 roundId) external nonReentrant {
        Round storage r = _round(roundId);
        Phase phase = r.phase;
        if (phase != Phase.Settled && phase != Phase.Closed) revert WrongPhase(roundId, phase, Phase.Settled);
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
        info.phase = r.phase;
        info.step = r.step;
        info.iteration = r.iteration;
        info.attempt = r.attempt;
        info.deadline = r.deadline;
        info.coordinator = r.coordinator;
        info.gridAccount = r.gridAccount;
        info.rule = address(r.rule);
        info.parentRoundId = r.parentRoundId;
        info.keyData = r.keyData;
        info.participantCount = r.participantCount;
        info.active = r.active;
        info.submissions = r.submissions;
        info.revealed = r.revealed;
        info.slots = r.slots;
        info.slotBits = r.slotBits;
        info.slotWidth = r.slotWidth;
        info.maxIterations = r.maxIterations;
        info.aggregated = r.aggregatedAttempt;
        info.modulusBytes = uint256(r.nWords) * 32;
        info.pairLanes = r.pairLanes;
        info.allowList = r.allowList;
        info.signedMembers = r.signedMembers;
        info.windows = r.windows;
        info.collateral = r.collateral;
        info.bond = r.bond;
        info.forfeited = r.forfeited;
        info.challengeUntil = r.challengeUntil;
        info.revealUntil = r.revealUntil;
        info.blameUntil = r.blameUntil;
        info.challengeKeyPlusOne = r.challengeKeyPlusOne;
    }

    /// @notice The last block at which the coordinator's next move is on time; after it anyone may
    ///         `cancel` (never, while participants are the ones to act). After conclusion: the
    ///         settlement's (anyone may settle; after the reveals, or a blame step and its challenges).
    /// @param roundId the round.
    /// @return late the block number.
    function coordinatorDeadline(uint256 roundId) public view returns (uint64 late) {
        Round storage r = _round(roundId);
        Phase phase = r.phase;
        uint64 window = r.windows.coordinator;
        if (phase == Phase.Registering) return r.deadline + window;
        if (phase == Phase.Concluded) {
            uint64 ready = r.blameUntil != 0 ? r.challengeUntil + r.windows.challenge : r.revealUntil;
            return ready + window;
        }
        if (phase == Phase.Iterating && r.step == Step.Aggregating) return r.deadline;
        return type(uint64).max;
    }

    /// @notice Registered participants in registration order (their keys are in `Registered`).
    /// @param roundId the round.
    /// @return accounts participant addresses.
    function participants(uint256 roundId) external view returns (address[] memory accounts) {
        return _round(roundId).participants;
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
    ///         one and its attempt, the iteration it left in plus one (0: active), member index plus
    ///         one, the dispute it opened in, whether it is a culprit, revealed or cleared, and the
    ///         hashes of its mask points, key, check values and reveal.
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

    function _register(Round storage r, uint256 roundId, bytes calldata keys, uint256 indexPlusOne) internal {
        _requirePhase(r, roundId, Phase.Registering);
        _requireOnTime(r);
        if (msg.sender == r.gridAccount) revert GridAccountCannotRegister(msg.sender);
        if (msg.sender == r.coordinator) revert NotMember(msg.sender);
        Member storage m = r.members[msg.sender];
        if (m.position != 0) revert AlreadyRegistered(msg.sender);
        uint256 expected = r.keyData != address(0) ? 2 * POINT_BYTES : (r.pairLanes != 0 ? POINT_BYTES : 0);
        if (keys.length != expected) revert KeysLength(keys.length, expected);
        if (expected != 0) {
            if (!Secp256k1.isPoint(keys[:POINT_BYTES])) revert MaskPointInvalid(msg.sender);
            m.keyHash = bytes16(keccak256(keys[:POINT_BYTES]));
        }
        if (expected == 2 * POINT_BYTES) {
            if (!Secp256k1.isPoint(keys[POINT_BYTES:])) revert MaskPointInvalid(msg.sender);
            m.nextPointHash = bytes16(keccak256(keys[POINT_BYTES:]));
        }
        uint256 count = r.participantCount;
        uint256 max = maxParticipants(roundId);
        if (count >= max) revert TooManyParticipants(max);
        uint16 position = uint16(count + 1);
        m.position = position;
        m.memberIndexPlusOne = uint32(indexPlusOne);
        r.participantCount = position;
        r.active = position;
        r.participants.push(msg.sender);
        emit Registered(roundId, msg.sender, position, keys);
    }

    /// @dev The caller may submit now: an active participant, the current iteration, on time, once per attempt.
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
        if (_submittedNow(r, m)) revert AlreadySubmitted(msg.sender, current);
    }

    /// @dev A ciphertext of the round's length; with a key a unit candidate. Its hash. (A copy of
    ///      another's ciphertext, re-randomised or not, passes here: its masks do not cancel, which
    ///      the decrypted check slot shows and a dispute pins on its sender.)
    function _acceptCiphertext(Round storage r, bytes calldata ciphertext) internal view returns (bytes32 ctHash) {
        uint256 expected = uint256(r.nWords) * 64;
        if (ciphertext.length != expected) revert CiphertextLength(ciphertext.length, expected);
        ctHash = keccak256(ciphertext);
        address keyData = r.keyData;
        if (keyData != address(0)) _checkCiphertext(keyData, ciphertext);
    }

    /// @dev Neither settled nor closed.
    function _requireOpen(uint256 roundId, Round storage r) internal view {
        Phase phase = r.phase;
        if (phase == Phase.Settled) revert AlreadySettled(roundId);
        if (phase == Phase.Closed) revert RoundClosed(roundId);
    }

    /// @dev Checks and emits submit's pair messages (one block per other active participant) and,
    ///      in rounds with a key, its next mask point (whose hash becomes the next iteration's,
    ///      shifting the current one, at the first attempt it submits in).
    function _acceptExtras(
        Round storage r,
        uint256 roundId,
        uint32 iteration,
        bytes calldata pairMessages,
        bytes calldata nextPoint,
        Member storage m,
        bool first
    ) internal {
        uint256 lanes = r.pairLanes;
        uint256 expected = lanes == 0 ? 0 : (uint256(r.active) - 1) * lanes * 8;
        if (pairMessages.length != expected) revert PairMessagesLength(pairMessages.length, expected);
        if (expected != 0) emit PairMessages(roundId, iteration, msg.sender, pairMessages);
        bool keyed = r.keyData != address(0);
        if (keyed ? !Secp256k1.isPoint(nextPoint) : nextPoint.length != 0) revert MaskPointInvalid(msg.sender);
        if (keyed) {
            bytes16 h = bytes16(keccak256(nextPoint));
            if (first) (m.pointHash, m.nextPointHash) = (m.nextPointHash, h);
            else m.nextPointHash = h;
            emit MaskPoint(roundId, iteration + 1, msg.sender, nextPoint);
        }
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
