// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {BigMod} from "./lib/BigMod.sol";
import {PackedSlots} from "./lib/PackedSlots.sol";

/// @title PrivateRounds
/// @notice The generic iterative private round: registration, Paillier-encrypted submissions,
///         on-chain homomorphic aggregation, publication of decrypted aggregates (with optional
///         on-chain opening checks), conclusion, settlement through a mechanism hook and a per-round
///         token ledger. See docs/protocol.md.
abstract contract PrivateRounds is ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    enum Phase {
        Registering,
        Iterating,
        Concluded,
        Settled
    }

    /// @notice Parameters of a round (see docs/protocol.md).
    /// @dev `periods` is the number of slots per ciphertext (the tariff market: one per period); the
    ///      public price vector (start/publish/conclude) has one entry per element of the price band,
    ///      `priceFloor.length == priceCap.length >= 1`, which the mechanism ties to its own layout.
    struct RoundParams {
        bytes n; // Paillier modulus, big-endian, a multiple of 32 bytes, odd
        uint16 periods; // slots per ciphertext (tariff market: T)
        uint8 slotBits; // B
        uint16 slotWidth; // W
        uint32 maxIterations;
        uint64[] priceFloor; // per price, lower bound (tariff market: feed-in price per period)
        uint64[] priceCap; // per price, upper bound (tariff market: retail price per period)
        address gridAccount;
        bool verifyOpenings;
        string mechanism; // the mechanism and its public update rule (JSON), for auditors; not interpreted here
        uint16 pairLanes; // 64-bit pad-encrypted words per other participant in submit's pairMessages (0: none)
        bytes terms; // mechanism terms (ABI-encoded), validated and decoded by the mechanism contract
    }

    /// @notice A participant's opening of its final commitment.
    struct Reveal {
        int64[] values;
        bytes32 salt;
        bytes32 ciphertextHash;
    }

    /// @notice Read-only summary of a round.
    struct RoundInfo {
        Phase phase;
        uint32 iteration;
        address coordinator;
        address gridAccount;
        address keyData;
        uint16 participantCount;
        uint16 periods;
        uint8 slotBits;
        uint16 slotWidth;
        uint32 maxIterations;
        bool verifyOpenings;
        bool aggregated;
        uint256 modulusBytes;
        uint16 pairLanes;
    }

    struct Round {
        // slot 0: everything submit() reads
        address keyData; // SSTORE2 data contract: 0x00 || n^2 || n
        Phase phase;
        uint32 iteration;
        uint16 nWords; // len(n) / 32
        uint16 participantCount;
        uint16 pairLanes;
        bool verifyOpenings;
        // slot 1
        address coordinator;
        uint8 slotBits;
        uint16 slotWidth;
        uint32 maxIterations;
        uint16 periods;
        // slot 2
        address gridAccount;
        // slot 3: hash of the current iteration's aggregate
        bytes28 aggregateHash;
        uint32 aggregatedIterationPlusOne;
        uint64[] priceFloor;
        uint64[] priceCap;
        uint64[] tariff;
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

    /// @notice The settlement token.
    IERC20 public immutable token;
    /// @notice Number of rounds created; round ids are 1..roundCount.
    uint256 public roundCount;

    mapping(uint256 => Round) internal _rounds;
    mapping(uint256 => mapping(address => Member)) internal _members;
    mapping(uint256 => mapping(address => uint256)) internal _balances;

    event RoundCreated(uint256 indexed roundId, address indexed coordinator, address keyData, RoundParams params);
    event Registered(uint256 indexed roundId, address indexed participant, uint16 position, bytes32 maskKey);
    event Deposited(uint256 indexed roundId, address indexed account, uint256 amount, uint256 balance);
    event RoundStarted(uint256 indexed roundId, uint32 indexed iteration, uint256 participants, uint64[] tariff);
    event Submitted(
        uint256 indexed roundId,
        uint32 indexed iteration,
        address indexed participant,
        bytes32 ciphertextHash,
        bytes32 commitment
    );
    event Aggregated(uint256 indexed roundId, uint32 indexed iteration, bytes aggregate);
    event Published(
        uint256 indexed roundId, uint32 indexed iteration, bytes plaintext, bytes opening, int64[] sums, uint64[] nextTariff
    );
    event Concluded(
        uint256 indexed roundId, uint32 indexed iteration, bytes plaintext, bytes opening, int64[] sums, uint64[] tariff
    );
    event PairMessages(uint256 indexed roundId, uint32 indexed iteration, address indexed participant, bytes messages);
    event Settled(uint256 indexed roundId, uint32 indexed iteration);
    event Payment(uint256 indexed roundId, uint32 indexed iteration, address indexed account, int256 amount);
    event Withdrawn(uint256 indexed roundId, address indexed account, uint256 amount);

    error UnknownRound(uint256 roundId);
    error NotCoordinator(address caller, address coordinator);
    error WrongPhase(uint256 roundId, Phase current, Phase expected);
    error AlreadyRegistered(address participant);
    error NotRegistered(address account);
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
    error AlreadyAggregated(uint256 roundId, uint32 iteration);
    error NotAggregated(uint256 roundId, uint32 iteration);
    error AggregateMismatch(uint256 roundId, uint32 iteration);
    error PlaintextLength(uint256 given, uint256 expected);
    error PlaintextOutOfRange(uint256 roundId, uint32 iteration);
    error OpeningLength(uint256 given, uint256 expected);
    error InvalidOpening(uint256 roundId, uint32 iteration);
    error TariffLength(uint256 given, uint256 expected);
    error TariffOutOfBand(uint256 period, uint64 price, uint64 floor, uint64 cap);
    error IterationCapReached(uint32 maxIterations);
    error RevealCount(uint256 given, uint256 expected);
    error RevealLength(address participant, uint256 given, uint256 expected);
    error CommitmentMismatch(address participant);
    error RevealedSumMismatch(uint256 period, int256 revealed, int256 decrypted);
    error SettlementImbalance(int256 sum);
    error InsufficientDeposit(address account, uint256 balance, uint256 needed);
    error AlreadySettled(uint256 roundId);
    error BadParameters(string reason);
    error ZeroAmount();
    error KeyStoreFailed();

    constructor(IERC20 token_) {
        token = token_;
    }

    // ------------------------------------------------------------------ round life cycle

    /// @notice Creates a round; the caller becomes its coordinator. Computes n^2 on chain and stores
    ///         n and n^2 as the code of a data contract. The mechanism validates its part of the
    ///         parameters (`terms`, `pairLanes`, the price vector's length) in `_configure`.
    /// @param p the round parameters.
    /// @return roundId the new round's id (1-based).
    function createRound(RoundParams calldata p) external returns (uint256 roundId) {
        _checkParams(p);
        bytes memory n = p.n;
        bytes memory nSq = BigMod.square(n);
        address keyData = _storeKey(nSq, n);

        roundId = ++roundCount;
        Round storage r = _rounds[roundId];
        r.keyData = keyData;
        r.phase = Phase.Registering;
        r.nWords = uint16(n.length / 32);
        r.periods = p.periods;
        r.verifyOpenings = p.verifyOpenings;
        r.coordinator = msg.sender;
        r.slotBits = p.slotBits;
        r.slotWidth = p.slotWidth;
        r.maxIterations = p.maxIterations;
        r.pairLanes = p.pairLanes;
        r.gridAccount = p.gridAccount;
        r.priceFloor = p.priceFloor;
        r.priceCap = p.priceCap;
        _configure(roundId, p);
        emit RoundCreated(roundId, msg.sender, keyData, p);
    }

    /// @notice Joins a round that is still registering (the mechanism may restrict who joins).
    /// @param roundId the round.
    /// @param maskKey the participant's X25519 public key for pairwise mask agreement.
    function register(uint256 roundId, bytes32 maskKey) external {
        Round storage r = _round(roundId);
        _requirePhase(roundId, r, Phase.Registering);
        if (msg.sender == r.gridAccount) revert GridAccountCannotRegister(msg.sender);
        Member storage m = _members[roundId][msg.sender];
        if (m.position != 0) revert AlreadyRegistered(msg.sender);
        _beforeRegister(roundId, msg.sender);
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
        if (r.phase == Phase.Settled) revert AlreadySettled(roundId);
        if (amount == 0) revert ZeroAmount();
        uint256 balance = _balances[roundId][msg.sender] + amount;
        _balances[roundId][msg.sender] = balance;
        emit Deposited(roundId, msg.sender, amount, balance);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Closes registration and opens iteration 0 with the first tariff (coordinator only).
    /// @param roundId the round.
    /// @param tariff0 the first public price vector (tariff market: one price per period), one entry
    ///        per element of the price band and inside it.
    function start(uint256 roundId, uint64[] calldata tariff0) external {
        Round storage r = _round(roundId);
        _requireCoordinator(r);
        _requirePhase(roundId, r, Phase.Registering);
        uint256 count = r.participantCount;
        if (count < MIN_PARTICIPANTS) revert TooFewParticipants(count, MIN_PARTICIPANTS);
        _checkTariff(r, tariff0);
        r.tariff = tariff0;
        r.phase = Phase.Iterating;
        r.iteration = 0;
        emit RoundStarted(roundId, 0, count, tariff0);
    }

    /// @notice Submits this iteration's ciphertext, the commitment to the plaintext vector and, in
    ///         rounds with pair lanes, the pad-encrypted messages to every other participant.
    /// @param roundId the round.
    /// @param iteration the current iteration.
    /// @param ciphertext Paillier ciphertext, len(n^2) bytes, 0 < c < n^2.
    /// @param commitment keccak256(abi.encode(roundId, iteration, participant, int64[] values, bytes32 salt)),
    ///        values = the participant's full reveal.
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
        address keyData = r.keyData;
        if (keyData == address(0)) revert UnknownRound(roundId);
        if (r.phase != Phase.Iterating) revert WrongPhase(roundId, r.phase, Phase.Iterating);
        uint32 current = r.iteration;
        if (iteration != current) revert WrongIteration(iteration, current);
        Member memory m = _members[roundId][msg.sender];
        if (m.position == 0) revert NotRegistered(msg.sender);
        if (m.submittedIterationPlusOne == current + 1) revert AlreadySubmitted(msg.sender, current);
        {
            uint256 ctLen = uint256(r.nWords) * 64;
            if (ciphertext.length != ctLen) revert CiphertextLength(ciphertext.length, ctLen);
        }
        if (!_inRange(keyData, ciphertext)) revert CiphertextOutOfRange(msg.sender);
        bool hasPairs = _checkPairMessages(r, pairMessages.length);
        bytes32 ctHash = keccak256(ciphertext);
        _members[roundId][msg.sender] =
            Member(bytes26(keccak256(abi.encodePacked(ctHash, commitment))), m.position, current + 1);
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
    ///         with a new tariff (coordinator only).
    /// @param roundId the round.
    /// @param agg the aggregate ciphertext emitted by `aggregate`.
    /// @param plaintext the decryption m, len(n) bytes, m < n.
    /// @param opening rho with agg == (1 + m*n) * rho^n mod n^2, len(n) bytes.
    /// @param nextTariff the price vector of the next iteration, inside the price band.
    /// @return sums the decoded slot sums (one per slot, `periods` of them).
    function publish(
        uint256 roundId,
        bytes calldata agg,
        bytes calldata plaintext,
        bytes calldata opening,
        uint64[] calldata nextTariff
    ) external returns (int64[] memory sums) {
        Round storage r = _round(roundId);
        _requireCoordinator(r);
        uint32 k = r.iteration;
        sums = _open(roundId, r, agg, plaintext, opening);
        if (uint256(k) + 1 >= r.maxIterations) revert IterationCapReached(r.maxIterations);
        _checkTariff(r, nextTariff);
        r.tariff = nextTariff;
        r.iteration = k + 1;
        emit Published(roundId, k, plaintext, opening, sums, nextTariff);
    }

    /// @notice Publishes the decrypted aggregate of the current iteration and makes the current
    ///         tariff and iteration final (coordinator only).
    /// @param roundId the round.
    /// @param agg the aggregate ciphertext emitted by `aggregate`.
    /// @param plaintext the decryption m, len(n) bytes, m < n.
    /// @param opening rho with agg == (1 + m*n) * rho^n mod n^2, len(n) bytes.
    /// @return sums the decoded slot sums (kept for settlement).
    function conclude(uint256 roundId, bytes calldata agg, bytes calldata plaintext, bytes calldata opening)
        external
        returns (int64[] memory sums)
    {
        Round storage r = _round(roundId);
        _requireCoordinator(r);
        sums = _open(roundId, r, agg, plaintext, opening);
        r.finalSums = sums;
        r.phase = Phase.Concluded;
        emit Concluded(roundId, r.iteration, plaintext, opening, sums, r.tariff);
    }

    /// @notice Settles a concluded round: checks every participant's reveal against its final
    ///         commitment and the first `periods` revealed values against the decrypted sums, computes
    ///         the payments with the mechanism rule and books them on the round's ledger (anyone may call).
    /// @param roundId the round.
    /// @param reveals one reveal per participant, in registration order, each of the mechanism's
    ///        reveal length (`_revealLength`).
    function settle(uint256 roundId, Reveal[] calldata reveals) external nonReentrant {
        Round storage r = _round(roundId);
        if (r.phase == Phase.Settled) revert AlreadySettled(roundId);
        _requirePhase(roundId, r, Phase.Concluded);
        int64[][] memory values = _checkReveals(roundId, r, reveals);
        (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts) =
            _settle(roundId, values);
        int256 total;
        for (uint256 i = 0; i < amounts.length; ++i) {
            total += amounts[i];
        }
        for (uint256 i = 0; i < payeeAmounts.length; ++i) {
            total += payeeAmounts[i];
        }
        if (total != 0) revert SettlementImbalance(total);

        r.phase = Phase.Settled;
        uint32 k = r.iteration;
        for (uint256 i = 0; i < amounts.length; ++i) {
            _book(roundId, k, r.participants[i], amounts[i]);
        }
        for (uint256 i = 0; i < payees.length; ++i) {
            _book(roundId, k, payees[i], payeeAmounts[i]);
        }
        emit Settled(roundId, k);
    }

    /// @notice Takes the caller's whole ledger balance out of the round (before the round starts
    ///         or after settlement).
    /// @param roundId the round.
    function withdraw(uint256 roundId) external nonReentrant {
        Round storage r = _round(roundId);
        if (r.phase != Phase.Settled) _requirePhase(roundId, r, Phase.Registering);
        uint256 amount = _balances[roundId][msg.sender];
        if (amount == 0) revert ZeroAmount();
        _balances[roundId][msg.sender] = 0;
        emit Withdrawn(roundId, msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ------------------------------------------------------------------ views

    /// @notice Summary of a round.
    /// @param roundId the round.
    /// @return info phase, iteration, coordinator and parameters.
    function roundInfo(uint256 roundId) external view returns (RoundInfo memory info) {
        Round storage r = _round(roundId);
        info = RoundInfo({
            phase: r.phase,
            iteration: r.iteration,
            coordinator: r.coordinator,
            gridAccount: r.gridAccount,
            keyData: r.keyData,
            participantCount: r.participantCount,
            periods: r.periods,
            slotBits: r.slotBits,
            slotWidth: r.slotWidth,
            maxIterations: r.maxIterations,
            verifyOpenings: r.verifyOpenings,
            aggregated: r.aggregatedIterationPlusOne == r.iteration + 1,
            modulusBytes: uint256(r.nWords) * 32,
            pairLanes: r.pairLanes
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
    /// @return prices one price per element of the price band (tariff market: per period, 1e-6 token per kWh).
    function tariff(uint256 roundId) external view returns (uint64[] memory prices) {
        return _round(roundId).tariff;
    }

    /// @notice The price band of a round.
    /// @param roundId the round.
    /// @return floor lower bounds (tariff market: feed-in prices per period).
    /// @return cap upper bounds (tariff market: retail prices per period).
    function priceBand(uint256 roundId) external view returns (uint64[] memory floor, uint64[] memory cap) {
        Round storage r = _round(roundId);
        return (r.priceFloor, r.priceCap);
    }

    /// @notice The decrypted slot sums the round concluded with.
    /// @param roundId the round.
    /// @return sums one sum per slot (tariff market: per period, 1e-6 kWh).
    function finalSums(uint256 roundId) external view returns (int64[] memory sums) {
        return _round(roundId).finalSums;
    }

    /// @notice The Paillier modulus n of a round.
    /// @param roundId the round.
    /// @return n big-endian bytes.
    function modulus(uint256 roundId) external view returns (bytes memory n) {
        Round storage r = _round(roundId);
        return _loadN(r.keyData, uint256(r.nWords) * 32);
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

    /// @notice The participant limit of a round: the slot headroom W - B bits must hold the count.
    /// @param roundId the round.
    /// @return max the largest number of participants.
    function maxParticipants(uint256 roundId) public view returns (uint256 max) {
        Round storage r = _round(roundId);
        uint256 headroom = uint256(r.slotWidth) - r.slotBits;
        max = headroom >= 16 ? type(uint16).max : (uint256(1) << headroom) - 1;
    }

    /// @notice Computes the settlement of a round for given reveal values without touching state.
    /// @param roundId the round (uses its current, after conclusion final, price vector).
    /// @param values per participant in registration order, the mechanism's reveal vector.
    /// @return amounts per participant, positive = credit, token base units.
    /// @return payees the other accounts the settlement pays or charges (e.g. grid account, operator).
    /// @return payeeAmounts their amounts, positive = credit; everything sums to zero.
    function quote(uint256 roundId, int64[][] calldata values)
        external
        view
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts)
    {
        Round storage r = _round(roundId);
        uint256 count = r.participantCount;
        if (values.length != count) revert RevealCount(values.length, count);
        uint256 len = _revealLength(roundId);
        int64[][] memory copy = new int64[][](count);
        for (uint256 i = 0; i < count; ++i) {
            int64[] calldata v = values[i];
            if (v.length != len) revert RevealLength(r.participants[i], v.length, len);
            copy[i] = v;
        }
        return _settlementAmounts(roundId, copy);
    }

    // ------------------------------------------------------------------ mechanism hooks

    /// @dev Validates and keeps the mechanism's part of the parameters (`terms`, `pairLanes`, the
    ///      length of the price vector); reverts `BadParameters(reason)`. Runs in `createRound`
    ///      after the generic round is stored (msg.sender is the coordinator).
    function _configure(uint256 roundId, RoundParams calldata p) internal virtual;

    /// @dev Runs in `register` before `account` joins `roundId` (default: anyone may join).
    function _beforeRegister(uint256 roundId, address account) internal virtual {}

    /// @dev Number of values in each participant's reveal (at least `periods`: the first `periods`
    ///      are the slots that were encrypted and are checked against the decrypted sums).
    function _revealLength(uint256 roundId) internal view virtual returns (uint256);

    /// @dev Payments of a concluded round: `amounts[i]` for participant i (registration order) and
    ///      `payeeAmounts[j]` for account `payees[j]`; positive = credit. Must sum to zero.
    function _settlementAmounts(uint256 roundId, int64[][] memory values)
        internal
        view
        virtual
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts);

    /// @dev The settlement as `settle` books it; a mechanism may override it to emit its own
    ///      per-participant events (reverted with the call if the settlement fails).
    function _settle(uint256 roundId, int64[][] memory values)
        internal
        virtual
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts)
    {
        return _settlementAmounts(roundId, values);
    }

    // ------------------------------------------------------------------ internals

    function _round(uint256 roundId) internal view returns (Round storage r) {
        r = _rounds[roundId];
        if (r.keyData == address(0)) revert UnknownRound(roundId);
    }

    function _requirePhase(uint256 roundId, Round storage r, Phase expected) internal view {
        Phase current = r.phase;
        if (current != expected) revert WrongPhase(roundId, current, expected);
    }

    function _requireCoordinator(Round storage r) internal view {
        address coordinator = r.coordinator;
        if (msg.sender != coordinator) revert NotCoordinator(msg.sender, coordinator);
    }

    function _checkParams(RoundParams calldata p) internal pure {
        uint256 L = p.n.length;
        if (L == 0 || L % 32 != 0 || L > MAX_MODULUS_BYTES) revert BadParameters("modulus length");
        if (uint8(p.n[L - 1]) & 1 == 0) revert BadParameters("modulus even");
        if (bytes32(p.n[0:32]) == bytes32(0)) revert BadParameters("modulus leading word zero");
        if (p.periods == 0) revert BadParameters("periods");
        if (p.slotBits == 0 || p.slotBits > 64) revert BadParameters("slot bits");
        if (p.slotWidth <= p.slotBits) revert BadParameters("slot width");
        if (uint256(p.periods) * p.slotWidth + 8 > 8 * L) revert BadParameters("slots exceed plaintext");
        if (p.maxIterations == 0) revert BadParameters("iteration cap");
        uint256 prices = p.priceFloor.length;
        if (prices == 0 || p.priceCap.length != prices) revert BadParameters("price band length");
        for (uint256 t = 0; t < prices; ++t) {
            if (p.priceFloor[t] > p.priceCap[t]) revert BadParameters("price floor above cap");
        }
        if (p.gridAccount == address(0)) revert BadParameters("grid account");
    }

    function _checkTariff(Round storage r, uint64[] calldata prices) internal view {
        uint64[] storage lo = r.priceFloor;
        uint256 T = lo.length;
        if (prices.length != T) revert TariffLength(prices.length, T);
        uint64[] storage hi = r.priceCap;
        for (uint256 t = 0; t < T; ++t) {
            uint64 p = prices[t];
            uint64 f = lo[t];
            uint64 c = hi[t];
            if (p < f || p > c) revert TariffOutOfBand(t, p, f, c);
        }
    }

    /// @dev Checks the length of submit's pair messages; true if there are any (to be emitted).
    function _checkPairMessages(Round storage r, uint256 given) internal view returns (bool) {
        uint256 lanes = r.pairLanes;
        uint256 expected = lanes == 0 ? 0 : (uint256(r.participantCount) - 1) * lanes * 8;
        if (given != expected) revert PairMessagesLength(given, expected);
        return expected != 0;
    }

    function _open(uint256 roundId, Round storage r, bytes calldata agg, bytes calldata plaintext, bytes calldata opening)
        internal
        view
        returns (int64[] memory sums)
    {
        _requirePhase(roundId, r, Phase.Iterating);
        uint32 k = r.iteration;
        if (r.aggregatedIterationPlusOne != k + 1) revert NotAggregated(roundId, k);
        if (bytes28(keccak256(agg)) != r.aggregateHash) revert AggregateMismatch(roundId, k);
        uint256 L = uint256(r.nWords) * 32;
        if (plaintext.length != L) revert PlaintextLength(plaintext.length, L);
        if (opening.length != L) revert OpeningLength(opening.length, L);
        bytes memory n = _loadN(r.keyData, L);
        bytes memory m = plaintext;
        if (!BigMod.lt(m, n)) revert PlaintextOutOfRange(roundId, k);
        if (r.verifyOpenings) {
            bytes memory nSq = _loadNSq(r.keyData, 2 * L);
            if (!BigMod.verifyOpening(agg, m, opening, n, nSq)) revert InvalidOpening(roundId, k);
        }
        sums = PackedSlots.decode(m, r.periods, r.slotBits, r.slotWidth);
    }

    function _checkReveals(uint256 roundId, Round storage r, Reveal[] calldata reveals)
        internal
        view
        returns (int64[][] memory values)
    {
        uint256 count = r.participantCount;
        if (reveals.length != count) revert RevealCount(reveals.length, count);
        uint256 len = _revealLength(roundId);
        uint256 T = r.periods;
        uint32 k = r.iteration;
        int256[] memory totals = new int256[](T);
        values = new int64[][](count);
        for (uint256 i = 0; i < count; ++i) {
            int64[] memory v = _openReveal(roundId, k, r.participants[i], reveals[i], len);
            for (uint256 t = 0; t < T; ++t) {
                totals[t] += v[t];
            }
            values[i] = v;
        }
        int64[] storage sums = r.finalSums;
        for (uint256 t = 0; t < T; ++t) {
            int256 decrypted = sums[t];
            if (totals[t] != decrypted) revert RevealedSumMismatch(t, totals[t], decrypted);
        }
    }

    /// @dev Checks one reveal's length and that it opens `who`'s final commitment; its values.
    function _openReveal(uint256 roundId, uint32 k, address who, Reveal calldata rv, uint256 len)
        internal
        view
        returns (int64[] memory v)
    {
        if (rv.values.length != len) revert RevealLength(who, rv.values.length, len);
        bytes32 commitment = keccak256(abi.encode(roundId, k, who, rv.values, rv.salt));
        bytes26 h = bytes26(keccak256(abi.encodePacked(rv.ciphertextHash, commitment)));
        if (h != _members[roundId][who].submissionHash) revert CommitmentMismatch(who);
        v = rv.values;
    }

    function _product(
        uint256 roundId,
        Round storage r,
        uint32 k,
        bytes[] calldata ciphertexts,
        bytes32[] calldata commitments
    ) internal view returns (bytes memory agg) {
        uint256 L2 = uint256(r.nWords) * 64;
        uint256 ctx = BigMod.context(_loadNSq(r.keyData, L2));
        agg = new bytes(L2);
        bytes memory tmp = new bytes(L2);
        for (uint256 i = 0; i < ciphertexts.length; ++i) {
            _absorb(roundId, r.participants[i], k, ciphertexts[i], commitments[i], i == 0 ? agg : tmp);
            if (i != 0) BigMod.modmulInto(ctx, agg, tmp, agg);
        }
    }

    /// @dev Copies a ciphertext into `dst` and checks it and the commitment against the stored hash.
    function _absorb(uint256 roundId, address who, uint32 k, bytes calldata ct, bytes32 commitment, bytes memory dst)
        internal
        view
    {
        Member memory m = _members[roundId][who];
        if (m.submittedIterationPlusOne != k + 1) revert SubmissionMissing(who, k);
        uint256 len = dst.length;
        if (ct.length != len) revert SubmissionMismatch(who, k);
        bytes32 h;
        assembly ("memory-safe") {
            calldatacopy(add(dst, 32), ct.offset, len)
            h := keccak256(add(dst, 32), len)
        }
        if (bytes26(keccak256(abi.encodePacked(h, commitment))) != m.submissionHash) revert SubmissionMismatch(who, k);
    }

    function _book(uint256 roundId, uint32 k, address account, int256 amount) internal {
        uint256 balance = _balances[roundId][account];
        if (amount < 0) {
            uint256 needed = uint256(-amount);
            if (balance < needed) revert InsufficientDeposit(account, balance, needed);
            _balances[roundId][account] = balance - needed;
        } else if (amount > 0) {
            _balances[roundId][account] = balance + uint256(amount);
        }
        emit Payment(roundId, k, account, amount);
    }

    function _storeKey(bytes memory nSq, bytes memory n) internal returns (address keyData) {
        uint256 codeLen = 1 + nSq.length + n.length;
        bytes memory init = abi.encodePacked(hex"61", uint16(codeLen), hex"80600a3d393df300", nSq, n);
        assembly ("memory-safe") {
            keyData := create(0, add(init, 32), mload(init))
        }
        if (keyData == address(0)) revert KeyStoreFailed();
    }

    function _loadNSq(address keyData, uint256 L2) internal view returns (bytes memory nSq) {
        nSq = new bytes(L2);
        assembly ("memory-safe") {
            extcodecopy(keyData, add(nSq, 32), 1, L2)
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
