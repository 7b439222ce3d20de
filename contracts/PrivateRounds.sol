// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {PaillierMath} from "./PaillierMath.sol";
import {ISettlementRule, RoundParams, SettleContext} from "./RoundTypes.sol";

/// @title PrivateRounds
/// @notice The generic private round of every gridshare mechanism: registration (open or by an
///         allow-list), per-iteration submissions (a Paillier ciphertext, or none in rounds without
///         a key, a hiding commitment and optional pair messages), on-chain homomorphic
///         aggregation, publication of decrypted aggregates with opening checks and the next public
///         prices, conclusion, settlement through the round's stateless rule contract, and a
///         per-round token ledger. Rounds may nest (a parent round id). See docs/protocol.md.
/// @dev Every phase change passes through `_setPhase`, every ledger move through `_update`.
///      Sign convention of amounts: positive = paid by the account.
contract PrivateRounds is ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    enum Phase {
        Registering,
        Iterating,
        Concluded,
        Settled,
        Closed
    }

    /// @notice Read-only summary of a round.
    struct RoundInfo {
        Phase phase;
        uint32 iteration;
        address coordinator;
        address gridAccount;
        address rule;
        uint256 parentRoundId;
        address keyData;
        uint16 participantCount;
        uint16 slots;
        uint8 slotBits;
        uint16 slotWidth;
        uint32 maxIterations;
        bool verifyOpenings;
        bool aggregated;
        uint256 modulusBytes;
        uint16 pairLanes;
        bool allowList;
    }

    struct Round {
        // slot 0: everything submit() reads
        address keyData; // SSTORE2 data contract 0x00 || n^2 || n (address(0): no key)
        Phase phase;
        uint32 iteration;
        uint8 nWords; // len(n) / 32 (at most 32)
        bool exists;
        uint16 participantCount;
        uint16 pairLanes;
        bool verifyOpenings;
        // slot 1
        address coordinator;
        uint8 slotBits;
        uint16 slotWidth;
        uint32 maxIterations;
        uint16 slots;
        uint16 submissions; // accepted submissions in the current iteration (rounds without a key)
        bool allowList;
        // slot 2
        address gridAccount;
        // slot 3
        ISettlementRule rule;
        // slot 4: hash of the current iteration's aggregate
        bytes28 aggregateHash;
        uint32 aggregatedIterationPlusOne;
        address termsData; // SSTORE2 data contract 0x00 || terms (address(0): no terms)
        uint256 parentRoundId;
        uint64[] priceFloor;
        uint64[] priceCap;
        uint64[] prices;
        int64[] finalSums;
        address[] participants;
        bytes32[] maskKeys;
    }

    /// @dev One storage slot per participant; registration makes it non-zero so that every later
    ///      submission is a non-zero -> non-zero write.
    struct Member {
        bytes26 submissionHash; // bytes26(keccak256(keccak256(ciphertext) || commitment))
        uint16 position; // 1-based registration order
        uint32 submittedIterationPlusOne;
    }

    uint256 internal constant MIN_PARTICIPANTS = 2;
    uint256 internal constant MAX_MODULUS_BYTES = 1024;
    uint256 internal constant MAX_DATA_BYTES = 24_000; // SSTORE2 data below the 24,576-byte code limit

    /// @notice The settlement token.
    IERC20 public immutable token;
    /// @notice The stateless Paillier arithmetic this contract created.
    PaillierMath public immutable paillier;
    /// @notice Number of rounds created; round ids are 1..roundCount.
    uint256 public roundCount;

    mapping(uint256 => Round) internal _rounds;
    mapping(uint256 => mapping(address => Member)) internal _members;
    mapping(uint256 => mapping(address => uint256)) internal _balances;
    mapping(uint256 => mapping(address => uint256)) internal _allowedPlusOne; // member index + 1

    event RoundCreated(
        uint256 indexed roundId, address indexed coordinator, uint256 indexed parentRoundId, address keyData, RoundParams params
    );
    event PhaseChanged(uint256 indexed roundId, Phase from, Phase to);
    event Registered(uint256 indexed roundId, address indexed participant, uint16 position, bytes32 maskKey);
    event Deposited(uint256 indexed roundId, address indexed account, uint256 amount, uint256 balance);
    event RoundStarted(uint256 indexed roundId, uint32 indexed iteration, uint256 participants, uint64[] prices);
    event Submitted(
        uint256 indexed roundId,
        uint32 indexed iteration,
        address indexed participant,
        bytes32 ciphertextHash,
        bytes32 commitment
    );
    event PairMessages(uint256 indexed roundId, uint32 indexed iteration, address indexed participant, bytes messages);
    event Aggregated(uint256 indexed roundId, uint32 indexed iteration, bytes aggregate);
    event Published(
        uint256 indexed roundId, uint32 indexed iteration, bytes plaintext, bytes opening, int64[] sums, uint64[] nextPrices
    );
    event Concluded(
        uint256 indexed roundId, uint32 indexed iteration, bytes plaintext, bytes opening, int64[] sums, uint64[] prices
    );
    event Closed(uint256 indexed roundId, uint32 indexed iteration);
    event Bill(uint256 indexed roundId, address indexed participant, int256[] items);
    event Payment(uint256 indexed roundId, uint32 indexed iteration, address indexed account, int256 amount);
    event Settled(uint256 indexed roundId, uint32 indexed iteration);
    event Withdrawn(uint256 indexed roundId, address indexed account, uint256 amount);

    error UnknownRound(uint256 roundId);
    error NotCoordinator(address caller, address coordinator);
    error WrongPhase(uint256 roundId, Phase current, Phase expected);
    error AlreadyRegistered(address participant);
    error NotRegistered(address account);
    error NotMember(address account);
    error GridAccountCannotRegister(address gridAccount);
    error TooFewParticipants(uint256 count, uint256 minimum);
    error TooManyParticipants(uint256 maximum);
    error WrongIteration(uint32 given, uint32 current);
    error AlreadySubmitted(address participant, uint32 iteration);
    error CiphertextLength(uint256 given, uint256 expected);
    error CiphertextOutOfRange(address participant);
    error PairMessagesLength(uint256 given, uint256 expected);
    error SubmissionCount(uint256 given, uint256 expected);
    error SubmissionMissing(address participant, uint32 iteration);
    error SubmissionMismatch(address participant, uint32 iteration);
    error NoKey(uint256 roundId);
    error AlreadyAggregated(uint256 roundId, uint32 iteration);
    error NotAggregated(uint256 roundId, uint32 iteration);
    error AggregateMismatch(uint256 roundId, uint32 iteration);
    error PlaintextLength(uint256 given, uint256 expected);
    error PlaintextOutOfRange(uint256 roundId, uint32 iteration);
    error OpeningLength(uint256 given, uint256 expected);
    error InvalidOpening(uint256 roundId, uint32 iteration);
    error PriceLength(uint256 given, uint256 expected);
    error PriceOutOfBand(uint256 index, uint64 price, uint64 floor, uint64 cap);
    error IterationCapReached(uint32 maxIterations);
    error RevealCount(uint256 given, uint256 expected);
    error RevealLength(address participant, uint256 given, uint256 expected);
    error RevealOutOfRange(address participant, uint256 index);
    error CommitmentMismatch(address participant);
    error RevealedSumMismatch(uint256 slot, int256 revealed, int256 decrypted);
    error SettlementImbalance(int256 sum);
    error SettlementShape(uint256 participants, uint256 amounts, uint256 payees, uint256 payeeAmounts, uint256 bills);
    error RoundClosed(uint256 roundId);
    error InsufficientDeposit(address account, uint256 balance, uint256 needed);
    error AlreadySettled(uint256 roundId);
    error BadParameters(string reason);
    error ZeroAmount();
    error DataStoreFailed();

    /// @param token_ the ERC-20 settlement token.
    constructor(IERC20 token_) {
        token = token_;
        paillier = new PaillierMath();
    }

    // ------------------------------------------------------------------ round life cycle

    /// @notice Creates a round; the caller becomes its coordinator. With a key, computes n^2 on
    ///         chain and stores n and n^2 as the code of a data contract; the terms likewise. The
    ///         round's rule validates the mechanism's part of the parameters (`configure`).
    /// @param p the round parameters.
    /// @return roundId the new round's id (1-based).
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
            r.verifyOpenings = p.verifyOpenings;
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
        if (p.terms.length != 0) r.termsData = _storeData(p.terms);
        uint256 m = p.members.length;
        if (m != 0) {
            r.allowList = true;
            mapping(address => uint256) storage allowed = _allowedPlusOne[roundId];
            for (uint256 i = 0; i < m; ++i) {
                address a = p.members[i];
                if (a == address(0) || allowed[a] != 0) revert BadParameters("members");
                allowed[a] = i + 1;
            }
        }
        p.rule.configure(p, msg.sender);
        emit RoundCreated(roundId, msg.sender, p.parentRoundId, r.keyData, p);
    }

    /// @notice Joins a round that is still registering (with an allow-list: members only).
    /// @param roundId the round.
    /// @param maskKey the participant's X25519 public key for pairwise mask agreement.
    function register(uint256 roundId, bytes32 maskKey) external {
        Round storage r = _round(roundId);
        _requirePhase(roundId, r, Phase.Registering);
        if (msg.sender == r.gridAccount) revert GridAccountCannotRegister(msg.sender);
        if (r.allowList && _allowedPlusOne[roundId][msg.sender] == 0) revert NotMember(msg.sender);
        Member storage m = _members[roundId][msg.sender];
        if (m.position != 0) revert AlreadyRegistered(msg.sender);
        uint256 count = r.participantCount;
        uint256 max = maxParticipants(roundId);
        if (count >= max) revert TooManyParticipants(max);
        uint16 position = uint16(count + 1);
        m.position = position;
        r.participantCount = position;
        r.participants.push(msg.sender);
        r.maskKeys.push(maskKey);
        emit Registered(roundId, msg.sender, position, maskKey);
    }

    /// @notice Deposits settlement tokens on the round's ledger (needs a prior ERC-20 approval).
    /// @param roundId the round.
    /// @param amount token base units.
    function deposit(uint256 roundId, uint256 amount) external nonReentrant {
        Round storage r = _round(roundId);
        _requireOpen(roundId, r);
        if (amount == 0) revert ZeroAmount();
        uint256 balance = _update(roundId, msg.sender, -int256(amount));
        emit Deposited(roundId, msg.sender, amount, balance);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Closes registration and opens iteration 0 with the first public prices (coordinator only).
    /// @param roundId the round.
    /// @param prices0 the first price vector, one entry per element of the price band and inside it.
    function start(uint256 roundId, uint64[] calldata prices0) external {
        Round storage r = _round(roundId);
        _requireCoordinator(r);
        _requirePhase(roundId, r, Phase.Registering);
        uint256 count = r.participantCount;
        if (count < MIN_PARTICIPANTS) revert TooFewParticipants(count, MIN_PARTICIPANTS);
        _checkPrices(r, prices0);
        r.prices = prices0;
        _setPhase(roundId, r, Phase.Iterating);
        emit RoundStarted(roundId, 0, count, prices0);
    }

    /// @notice Submits this iteration's ciphertext, the commitment to the reveal vector and, in
    ///         rounds with pair lanes, the pad-encrypted messages to every other participant.
    /// @param roundId the round.
    /// @param iteration the current iteration.
    /// @param ciphertext Paillier ciphertext, len(n^2) bytes, 0 < c < n^2; empty in rounds without a key.
    /// @param commitment keccak256(abi.encode(roundId, iteration, participant, keccak256(abi.encodePacked(
    ///        int256[] values)), bytes32 salt)), values = the participant's full reveal (each within int64).
    /// @param pairMessages empty if the round has no pair lanes; else one block per other participant in
    ///        registration order (the sender skipped), each `pairLanes` 64-bit big-endian words, emitted in
    ///        `PairMessages` and not interpreted (nor part of the stored submission hash).
    function submit(
        uint256 roundId,
        uint32 iteration,
        bytes calldata ciphertext,
        bytes32 commitment,
        bytes calldata pairMessages
    ) external {
        Round storage r = _rounds[roundId];
        if (!r.exists) revert UnknownRound(roundId);
        if (r.phase != Phase.Iterating) revert WrongPhase(roundId, r.phase, Phase.Iterating);
        uint32 current = r.iteration;
        if (iteration != current) revert WrongIteration(iteration, current);
        Member memory m = _members[roundId][msg.sender];
        if (m.position == 0) revert NotRegistered(msg.sender);
        if (m.submittedIterationPlusOne == current + 1) revert AlreadySubmitted(msg.sender, current);
        address keyData = r.keyData;
        {
            uint256 ctLen = uint256(r.nWords) * 64;
            if (ciphertext.length != ctLen) revert CiphertextLength(ciphertext.length, ctLen);
        }
        if (keyData != address(0) && !_inRange(keyData, ciphertext)) revert CiphertextOutOfRange(msg.sender);
        bool hasPairs = _checkPairMessages(r, pairMessages.length);
        bytes32 ctHash = keccak256(ciphertext);
        _members[roundId][msg.sender] =
            Member(bytes26(keccak256(abi.encodePacked(ctHash, commitment))), m.position, current + 1);
        if (keyData == address(0)) ++r.submissions; // keyed rounds count them in `aggregate`
        emit Submitted(roundId, current, msg.sender, ctHash, commitment);
        if (hasPairs) emit PairMessages(roundId, current, msg.sender, pairMessages);
    }

    /// @notice Multiplies all submissions of the current iteration modulo n^2 (anyone may call, once
    ///         every participant has submitted). Ciphertexts and commitments in registration order.
    /// @param roundId the round.
    /// @param ciphertexts the submitted ciphertexts.
    /// @param commitments the submitted commitments.
    /// @return agg the aggregate ciphertext, len(n^2) bytes.
    function aggregate(uint256 roundId, bytes[] calldata ciphertexts, bytes32[] calldata commitments)
        external
        returns (bytes memory agg)
    {
        Round storage r = _round(roundId);
        _requirePhase(roundId, r, Phase.Iterating);
        if (r.keyData == address(0)) revert NoKey(roundId);
        uint32 k = r.iteration;
        if (r.aggregatedIterationPlusOne == k + 1) revert AlreadyAggregated(roundId, k);
        uint256 count = r.participantCount;
        if (ciphertexts.length != count) revert SubmissionCount(ciphertexts.length, count);
        if (commitments.length != count) revert SubmissionCount(commitments.length, count);
        agg = _product(roundId, r, k, ciphertexts, commitments);
        r.aggregateHash = bytes28(keccak256(agg));
        r.aggregatedIterationPlusOne = k + 1;
        emit Aggregated(roundId, k, agg);
    }

    /// @notice Publishes the decrypted aggregate of the current iteration and opens the next one
    ///         with new public prices (coordinator only). Rounds without a key publish nothing but
    ///         the prices, once every participant has submitted.
    /// @param roundId the round.
    /// @param agg the aggregate ciphertext emitted by `aggregate` (empty without a key).
    /// @param plaintext the decryption m, len(n) bytes, m < n (empty without a key).
    /// @param opening rho with agg == (1 + m*n) * rho^n mod n^2, len(n) bytes (empty without a key).
    /// @param nextPrices the price vector of the next iteration, inside the price band.
    /// @return sums the decoded slot sums (`slots` of them; none without a key).
    function publish(
        uint256 roundId,
        bytes calldata agg,
        bytes calldata plaintext,
        bytes calldata opening,
        uint64[] calldata nextPrices
    ) external returns (int64[] memory sums) {
        Round storage r = _round(roundId);
        _requireCoordinator(r);
        uint32 k = r.iteration;
        sums = _open(roundId, r, agg, plaintext, opening);
        if (uint256(k) + 1 >= r.maxIterations) revert IterationCapReached(r.maxIterations);
        _checkPrices(r, nextPrices);
        r.prices = nextPrices;
        r.iteration = k + 1;
        r.submissions = 0;
        emit Published(roundId, k, plaintext, opening, sums, nextPrices);
    }

    /// @notice Publishes the decrypted aggregate of the current iteration and makes the current
    ///         prices and iteration final (coordinator only).
    /// @param roundId the round.
    /// @param agg the aggregate ciphertext emitted by `aggregate` (empty without a key).
    /// @param plaintext the decryption m, len(n) bytes, m < n (empty without a key).
    /// @param opening rho with agg == (1 + m*n) * rho^n mod n^2, len(n) bytes (empty without a key).
    /// @return sums the decoded slot sums (kept for settlement).
    function conclude(uint256 roundId, bytes calldata agg, bytes calldata plaintext, bytes calldata opening)
        external
        returns (int64[] memory sums)
    {
        Round storage r = _round(roundId);
        _requireCoordinator(r);
        sums = _open(roundId, r, agg, plaintext, opening);
        r.finalSums = sums;
        _setPhase(roundId, r, Phase.Concluded);
        emit Concluded(roundId, r.iteration, plaintext, opening, sums, r.prices);
    }

    /// @notice Closes a round that is not settled without trading (coordinator only): nothing is
    ///         settled and every deposit can be withdrawn in full. Used for a run that did not
    ///         converge, or one that cannot go on.
    /// @param roundId the round.
    function close(uint256 roundId) external {
        Round storage r = _round(roundId);
        _requireCoordinator(r);
        _requireOpen(roundId, r);
        _setPhase(roundId, r, Phase.Closed);
        emit Closed(roundId, r.iteration);
    }

    /// @notice Settles a concluded round (anyone may call): checks every participant's reveal
    ///         against its final commitment and, with a key, the first `slots` revealed values
    ///         against the decrypted sums; asks the round's rule for the payments and books them.
    /// @param roundId the round.
    /// @param values the reveals of all participants, registration order, one after the other, each
    ///        of the rule's reveal length (participant i's value j at i * length + j), within int64.
    /// @param salts the salt of each participant's final commitment.
    /// @param ciphertextHashes keccak256 of each participant's final ciphertext (of "" without a key).
    function settle(
        uint256 roundId,
        int256[] calldata values,
        bytes32[] calldata salts,
        bytes32[] calldata ciphertextHashes
    ) external nonReentrant {
        Round storage r = _round(roundId);
        if (r.phase == Phase.Settled) revert AlreadySettled(roundId);
        _requirePhase(roundId, r, Phase.Concluded);
        uint256 len = _checkReveals(roundId, r, values, salts, ciphertextHashes);
        (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts, int256[][] memory bills) =
            r.rule.settle(_context(roundId, r, len), values);
        _checkSettlement(r, amounts, payees, payeeAmounts, bills);
        _setPhase(roundId, r, Phase.Settled);
        _bookAll(roundId, r, amounts, payees, payeeAmounts, bills);
        emit Settled(roundId, r.iteration);
    }

    /// @notice Takes the caller's whole ledger balance out of the round (before the round starts,
    ///         after settlement or after the round was closed).
    /// @param roundId the round.
    function withdraw(uint256 roundId) external nonReentrant {
        Round storage r = _round(roundId);
        Phase phase = r.phase;
        if (phase != Phase.Settled && phase != Phase.Closed) _requirePhase(roundId, r, Phase.Registering);
        uint256 amount = _balances[roundId][msg.sender];
        if (amount == 0) revert ZeroAmount();
        _update(roundId, msg.sender, int256(amount));
        emit Withdrawn(roundId, msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ------------------------------------------------------------------ views

    /// @notice Summary of a round.
    /// @param roundId the round.
    /// @return info phase, iteration, coordinator, rule and parameters.
    function roundInfo(uint256 roundId) external view returns (RoundInfo memory info) {
        Round storage r = _round(roundId);
        info = RoundInfo({
            phase: r.phase,
            iteration: r.iteration,
            coordinator: r.coordinator,
            gridAccount: r.gridAccount,
            rule: address(r.rule),
            parentRoundId: r.parentRoundId,
            keyData: r.keyData,
            participantCount: r.participantCount,
            slots: r.slots,
            slotBits: r.slotBits,
            slotWidth: r.slotWidth,
            maxIterations: r.maxIterations,
            verifyOpenings: r.verifyOpenings,
            aggregated: r.aggregatedIterationPlusOne == r.iteration + 1,
            modulusBytes: uint256(r.nWords) * 32,
            pairLanes: r.pairLanes,
            allowList: r.allowList
        });
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
        _round(roundId);
        return _allowedPlusOne[roundId][account];
    }

    /// @notice The stored submission state of an account.
    /// @param roundId the round.
    /// @param account the participant.
    /// @return submissionHash bytes26 hash of the latest submission.
    /// @return position 1-based registration position (0: not registered).
    /// @return submittedIterationPlusOne latest iteration submitted, plus one (0: none).
    function member(uint256 roundId, address account)
        external
        view
        returns (bytes26 submissionHash, uint16 position, uint32 submittedIterationPlusOne)
    {
        Member memory m = _members[roundId][account];
        return (m.submissionHash, m.position, m.submittedIterationPlusOne);
    }

    /// @notice An account's ledger balance in a round.
    /// @param roundId the round.
    /// @param account the account.
    /// @return balance token base units.
    function balanceOf(uint256 roundId, address account) external view returns (uint256 balance) {
        return _balances[roundId][account];
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
        Round storage r = _round(roundId);
        if (r.phase == Phase.Registering) revert WrongPhase(roundId, r.phase, Phase.Iterating); // no prices yet
        uint256 count = r.participantCount;
        uint256 len = r.rule.revealLength(r.slots, r.pairLanes, count);
        if (values.length != count * len) revert RevealLength(address(0), values.length, count * len);
        for (uint256 i = 0; i < count; ++i) {
            _valuesHash(values[i * len:(i + 1) * len], r.participants[i]);
        }
        return r.rule.settle(_context(roundId, r, len), values);
    }

    // ------------------------------------------------------------------ hooks

    /// @dev The one place a round's phase changes: phases only move forward (Registering ->
    ///      Iterating -> Concluded -> Settled, or to Closed from any phase before Settled).
    function _setPhase(uint256 roundId, Round storage r, Phase next) internal {
        Phase current = r.phase;
        if (next <= current || (current == Phase.Settled)) revert WrongPhase(roundId, current, next);
        r.phase = next;
        emit PhaseChanged(roundId, current, next);
    }

    /// @dev The one place a ledger balance changes: `paid` > 0 debits `account`, < 0 credits it
    ///      (deposits credit, withdrawals and payments debit). Returns the new balance.
    function _update(uint256 roundId, address account, int256 paid) internal returns (uint256 balance) {
        balance = _balances[roundId][account];
        if (paid > 0) {
            uint256 needed = uint256(paid);
            if (balance < needed) revert InsufficientDeposit(account, balance, needed);
            balance -= needed;
        } else {
            balance += uint256(-paid);
        }
        _balances[roundId][account] = balance;
    }

    // ------------------------------------------------------------------ internals

    function _round(uint256 roundId) internal view returns (Round storage r) {
        r = _rounds[roundId];
        if (!r.exists) revert UnknownRound(roundId);
    }

    function _requirePhase(uint256 roundId, Round storage r, Phase expected) internal view {
        Phase current = r.phase;
        if (current != expected) revert WrongPhase(roundId, current, expected);
    }

    /// @dev Neither settled nor closed.
    function _requireOpen(uint256 roundId, Round storage r) internal view {
        Phase phase = r.phase;
        if (phase == Phase.Settled) revert AlreadySettled(roundId);
        if (phase == Phase.Closed) revert RoundClosed(roundId);
    }

    function _requireCoordinator(Round storage r) internal view {
        address coordinator = r.coordinator;
        if (msg.sender != coordinator) revert NotCoordinator(msg.sender, coordinator);
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
            if (uint256(p.slots) * p.slotWidth + 8 > 8 * L) revert BadParameters("slots exceed plaintext");
        } else if (p.verifyOpenings || p.slotBits != 0 || p.slotWidth != 0) {
            revert BadParameters("no key: no slot layout, no openings");
        }
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
            if (pr.coordinator != msg.sender && _members[parent][msg.sender].position == 0) {
                revert BadParameters("not a party of the parent round");
            }
        }
    }

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

    /// @dev Checks the length of submit's pair messages; true if there are any (to be emitted).
    function _checkPairMessages(Round storage r, uint256 given) internal view returns (bool) {
        uint256 lanes = r.pairLanes;
        uint256 expected = lanes == 0 ? 0 : (uint256(r.participantCount) - 1) * lanes * 8;
        if (given != expected) revert PairMessagesLength(given, expected);
        return expected != 0;
    }

    /// @dev The decoded sums of the current iteration's aggregate (checks the decryption), or, in a
    ///      round without a key, none once everybody has submitted.
    function _open(uint256 roundId, Round storage r, bytes calldata agg, bytes calldata plaintext, bytes calldata opening)
        internal
        view
        returns (int64[] memory sums)
    {
        _requirePhase(roundId, r, Phase.Iterating);
        uint256 L = uint256(r.nWords) * 32;
        if (plaintext.length != L) revert PlaintextLength(plaintext.length, L);
        if (opening.length != L) revert OpeningLength(opening.length, L);
        if (r.keyData == address(0)) {
            if (agg.length != 0) revert AggregateMismatch(roundId, r.iteration);
            if (r.submissions != r.participantCount) revert SubmissionCount(r.submissions, r.participantCount);
            return sums;
        }
        if (r.aggregatedIterationPlusOne != r.iteration + 1) revert NotAggregated(roundId, r.iteration);
        if (bytes28(keccak256(agg)) != r.aggregateHash) revert AggregateMismatch(roundId, r.iteration);
        PaillierMath.Opening outcome;
        (outcome, sums) = _decrypt(r, agg, plaintext, opening);
        if (outcome == PaillierMath.Opening.PlaintextOutOfRange) revert PlaintextOutOfRange(roundId, r.iteration);
        if (outcome == PaillierMath.Opening.InvalidOpening) revert InvalidOpening(roundId, r.iteration);
    }

    function _decrypt(Round storage r, bytes memory agg, bytes memory plaintext, bytes memory opening)
        internal
        view
        returns (PaillierMath.Opening, int64[] memory)
    {
        PaillierMath.Layout memory layout = PaillierMath.Layout(r.verifyOpenings, r.slots, r.slotBits, r.slotWidth);
        return paillier.open(r.keyData, agg, plaintext, opening, layout);
    }

    /// @dev Every reveal has the rule's length, stays within int64 and opens its participant's final
    ///      commitment; with a key, the first `slots` values add up to the decrypted sums. Returns
    ///      the reveal length.
    function _checkReveals(
        uint256 roundId,
        Round storage r,
        int256[] calldata values,
        bytes32[] calldata salts,
        bytes32[] calldata ciphertextHashes
    ) internal view returns (uint256 len) {
        uint256 count = r.participantCount;
        if (salts.length != count) revert RevealCount(salts.length, count);
        if (ciphertextHashes.length != count) revert RevealCount(ciphertextHashes.length, count);
        len = r.rule.revealLength(r.slots, r.pairLanes, count);
        if (values.length != count * len) revert RevealLength(address(0), values.length, count * len);
        uint32 k = r.iteration;
        for (uint256 i = 0; i < count; ++i) {
            address who = r.participants[i];
            bytes32 commitment =
                keccak256(abi.encode(roundId, k, who, _valuesHash(values[i * len:(i + 1) * len], who), salts[i]));
            if (bytes26(keccak256(abi.encodePacked(ciphertextHashes[i], commitment))) != _members[roundId][who].submissionHash) {
                revert CommitmentMismatch(who);
            }
        }
        if (r.keyData != address(0)) _checkSums(r, values, len);
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

    /// @dev The first `slots` values of the reveals add up to the decrypted sums.
    function _checkSums(Round storage r, int256[] calldata values, uint256 len) internal view {
        uint256 S = r.slots;
        int64[] storage sums = r.finalSums;
        uint256 count = values.length / len;
        for (uint256 t = 0; t < S; ++t) {
            int256 total;
            for (uint256 i = 0; i < count; ++i) {
                total += values[i * len + t];
            }
            int256 decrypted = sums[t];
            if (total != decrypted) revert RevealedSumMismatch(t, total, decrypted);
        }
    }

    /// @dev The round as its rule sees it at settlement.
    function _context(uint256 roundId, Round storage r, uint256 len) internal view returns (SettleContext memory ctx) {
        address[] memory parts = r.participants;
        uint256[] memory index = new uint256[](parts.length);
        mapping(address => uint256) storage allowed = _allowedPlusOne[roundId];
        bool listed = r.allowList;
        for (uint256 i = 0; i < parts.length; ++i) {
            index[i] = listed ? allowed[parts[i]] - 1 : i;
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
    ) internal view {
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
        uint256 roundId,
        Round storage r,
        int256[] memory amounts,
        address[] memory payees,
        int256[] memory payeeAmounts,
        int256[][] memory bills
    ) internal {
        uint32 k = r.iteration;
        address[] storage parts = r.participants;
        for (uint256 i = 0; i < amounts.length; ++i) {
            address who = parts[i];
            if (bills.length != 0) emit Bill(roundId, who, bills[i]);
            _book(roundId, k, who, amounts[i]);
        }
        for (uint256 i = 0; i < payees.length; ++i) {
            _book(roundId, k, payees[i], payeeAmounts[i]);
        }
    }

    function _book(uint256 roundId, uint32 k, address account, int256 paid) internal {
        _update(roundId, account, paid);
        emit Payment(roundId, k, account, paid);
    }

    /// @dev The product of the iteration's ciphertexts (each checked against its participant's
    ///      stored submission hash).
    function _product(
        uint256 roundId,
        Round storage r,
        uint32 k,
        bytes[] calldata ciphertexts,
        bytes32[] calldata commitments
    ) internal view returns (bytes memory agg) {
        uint256 L2 = uint256(r.nWords) * 64;
        for (uint256 i = 0; i < ciphertexts.length; ++i) {
            _absorb(roundId, r.participants[i], k, ciphertexts[i], commitments[i], L2);
        }
        agg = paillier.product(r.keyData, ciphertexts);
    }

    /// @dev Checks a ciphertext and its commitment against the participant's stored hash.
    function _absorb(uint256 roundId, address who, uint32 k, bytes calldata ct, bytes32 commitment, uint256 len)
        internal
        view
    {
        Member memory m = _members[roundId][who];
        if (m.submittedIterationPlusOne != k + 1) revert SubmissionMissing(who, k);
        if (ct.length != len) revert SubmissionMismatch(who, k);
        bytes32 h;
        assembly ("memory-safe") {
            let p := mload(0x40)
            calldatacopy(p, ct.offset, len)
            h := keccak256(p, len)
        }
        if (bytes26(keccak256(abi.encodePacked(h, commitment))) != m.submissionHash) revert SubmissionMismatch(who, k);
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

    function _loadData(address at) internal view returns (bytes memory data) {
        if (at == address(0)) return data;
        uint256 len = at.code.length - 1;
        data = new bytes(len);
        assembly ("memory-safe") {
            extcodecopy(at, add(data, 32), 1, len)
        }
    }

    function _loadN(address keyData, uint256 L) internal view returns (bytes memory n) {
        n = new bytes(L);
        assembly ("memory-safe") {
            extcodecopy(keyData, add(n, 32), add(1, mul(2, L)), L)
        }
    }

    /// @dev 0 < c < n^2 for a calldata ciphertext of len(n^2) bytes.
    function _inRange(address keyData, bytes calldata c) internal view returns (bool ok) {
        assembly ("memory-safe") {
            let L2 := c.length
            let p := mload(0x40)
            extcodecopy(keyData, p, 1, L2)
            let any := 0
            let less := 0
            let decided := 0
            for { let i := 0 } lt(i, L2) { i := add(i, 32) } {
                let x := calldataload(add(c.offset, i))
                any := or(any, x)
                if iszero(decided) {
                    let y := mload(add(p, i))
                    if iszero(eq(x, y)) {
                        less := lt(x, y)
                        decided := 1
                    }
                }
            }
            ok := and(less, iszero(iszero(any)))
        }
    }
}
