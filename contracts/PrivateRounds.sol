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
    struct RoundParams {
        bytes n; // Paillier modulus, big-endian, a multiple of 32 bytes, odd
        uint16 periods; // T
        uint8 slotBits; // B
        uint16 slotWidth; // W
        uint32 maxIterations;
        uint64[] priceFloor; // per period, feed-in price
        uint64[] priceCap; // per period, retail price
        address gridAccount;
        bool verifyOpenings;
        string mechanism; // the mechanism and its public update rule (JSON), for auditors; not interpreted here
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
    }

    struct Round {
        // slot 0: everything submit() reads
        address keyData; // SSTORE2 data contract: 0x00 || n^2 || n
        Phase phase;
        uint32 iteration;
        uint16 nWords; // len(n) / 32
        uint16 participantCount;
        uint16 periods;
        bool verifyOpenings;
        // slot 1
        address coordinator;
        uint8 slotBits;
        uint16 slotWidth;
        uint32 maxIterations;
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
    event Settled(uint256 indexed roundId, uint32 indexed iteration, int256 gridAmount);
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
    ///         n and n^2 as the code of a data contract.
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
        r.gridAccount = p.gridAccount;
        r.priceFloor = p.priceFloor;
        r.priceCap = p.priceCap;
        emit RoundCreated(roundId, msg.sender, keyData, p);
    }

    /// @notice Joins a round that is still registering.
    /// @param roundId the round.
    /// @param maskKey the participant's X25519 public key for pairwise mask agreement.
    function register(uint256 roundId, bytes32 maskKey) external {
        Round storage r = _round(roundId);
        _requirePhase(roundId, r, Phase.Registering);
        if (msg.sender == r.gridAccount) revert GridAccountCannotRegister(msg.sender);
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
        if (r.phase == Phase.Settled) revert AlreadySettled(roundId);
        if (amount == 0) revert ZeroAmount();
        uint256 balance = _balances[roundId][msg.sender] + amount;
        _balances[roundId][msg.sender] = balance;
        emit Deposited(roundId, msg.sender, amount, balance);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Closes registration and opens iteration 0 with the first tariff (coordinator only).
    /// @param roundId the round.
    /// @param tariff0 the first tariff, one price per period, inside the price band.
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

    /// @notice Submits this iteration's ciphertext and the commitment to the plaintext vector.
    /// @param roundId the round.
    /// @param iteration the current iteration.
    /// @param ciphertext Paillier ciphertext, len(n^2) bytes, 0 < c < n^2.
    /// @param commitment keccak256(abi.encode(roundId, iteration, participant, int64[] values, bytes32 salt)).
    function submit(uint256 roundId, uint32 iteration, bytes calldata ciphertext, bytes32 commitment) external {
        Round storage r = _rounds[roundId];
        address keyData = r.keyData;
        if (keyData == address(0)) revert UnknownRound(roundId);
        if (r.phase != Phase.Iterating) revert WrongPhase(roundId, r.phase, Phase.Iterating);
        uint32 current = r.iteration;
        if (iteration != current) revert WrongIteration(iteration, current);
        Member memory m = _members[roundId][msg.sender];
        if (m.position == 0) revert NotRegistered(msg.sender);
        if (m.submittedIterationPlusOne == current + 1) revert AlreadySubmitted(msg.sender, current);
        uint256 ctLen = uint256(r.nWords) * 64;
        if (ciphertext.length != ctLen) revert CiphertextLength(ciphertext.length, ctLen);
        if (!_inRange(keyData, ciphertext)) revert CiphertextOutOfRange(msg.sender);
        bytes32 ctHash = keccak256(ciphertext);
        _members[roundId][msg.sender] =
            Member(bytes26(keccak256(abi.encodePacked(ctHash, commitment))), m.position, current + 1);
        emit Submitted(roundId, current, msg.sender, ctHash, commitment);
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
    /// @param nextTariff the tariff of the next iteration, inside the price band.
    /// @return sums the decoded per-period sums.
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
    /// @return sums the decoded per-period sums (kept for settlement).
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
    ///         commitment and the revealed values against the decrypted sums, computes the payments
    ///         with the mechanism rule and books them on the round's ledger (anyone may call).
    /// @param roundId the round.
    /// @param reveals one reveal per participant, in registration order.
    function settle(uint256 roundId, Reveal[] calldata reveals) external nonReentrant {
        Round storage r = _round(roundId);
        if (r.phase == Phase.Settled) revert AlreadySettled(roundId);
        _requirePhase(roundId, r, Phase.Concluded);
        int64[][] memory values = _checkReveals(roundId, r, reveals);
        (int256[] memory amounts, int256 gridAmount) = _settlementAmounts(roundId, values);
        int256 total = gridAmount;
        for (uint256 i = 0; i < amounts.length; ++i) {
            total += amounts[i];
        }
        if (total != 0) revert SettlementImbalance(total);

        r.phase = Phase.Settled;
        uint32 k = r.iteration;
        for (uint256 i = 0; i < amounts.length; ++i) {
            _book(roundId, k, r.participants[i], amounts[i]);
        }
        _book(roundId, k, r.gridAccount, gridAmount);
        emit Settled(roundId, k, gridAmount);
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
            modulusBytes: uint256(r.nWords) * 32
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

    /// @notice The current (after conclusion: final) tariff.
    /// @param roundId the round.
    /// @return prices one price per period (1e-6 token per kWh).
    function tariff(uint256 roundId) external view returns (uint64[] memory prices) {
        return _round(roundId).tariff;
    }

    /// @notice The price band of a round.
    /// @param roundId the round.
    /// @return floor feed-in prices per period.
    /// @return cap retail prices per period.
    function priceBand(uint256 roundId) external view returns (uint64[] memory floor, uint64[] memory cap) {
        Round storage r = _round(roundId);
        return (r.priceFloor, r.priceCap);
    }

    /// @notice The decrypted per-period sums the round concluded with.
    /// @param roundId the round.
    /// @return sums per-period sums (1e-6 kWh).
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

    // ------------------------------------------------------------------ mechanism hook

    /// @dev Payments of a concluded round: `amounts[i]` for participant i (registration order) and
    ///      the grid account's amount; positive = credit. Must sum to zero.
    function _settlementAmounts(uint256 roundId, int64[][] memory values)
        internal
        view
        virtual
        returns (int256[] memory amounts, int256 gridAmount);

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
        if (p.priceFloor.length != p.periods || p.priceCap.length != p.periods) revert BadParameters("price band length");
        for (uint256 t = 0; t < p.periods; ++t) {
            if (p.priceFloor[t] > p.priceCap[t]) revert BadParameters("price floor above cap");
        }
        if (p.gridAccount == address(0)) revert BadParameters("grid account");
    }

    function _checkTariff(Round storage r, uint64[] calldata prices) internal view {
        uint256 T = r.periods;
        if (prices.length != T) revert TariffLength(prices.length, T);
        uint64[] storage lo = r.priceFloor;
        uint64[] storage hi = r.priceCap;
        for (uint256 t = 0; t < T; ++t) {
            uint64 p = prices[t];
            uint64 f = lo[t];
            uint64 c = hi[t];
            if (p < f || p > c) revert TariffOutOfBand(t, p, f, c);
        }
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
        uint256 T = r.periods;
        uint32 k = r.iteration;
        int256[] memory totals = new int256[](T);
        values = new int64[][](count);
        for (uint256 i = 0; i < count; ++i) {
            address who = r.participants[i];
            Reveal calldata rv = reveals[i];
            if (rv.values.length != T) revert RevealLength(who, rv.values.length, T);
            bytes32 commitment = keccak256(abi.encode(roundId, k, who, rv.values, rv.salt));
            bytes26 h = bytes26(keccak256(abi.encodePacked(rv.ciphertextHash, commitment)));
            if (h != _members[roundId][who].submissionHash) revert CommitmentMismatch(who);
            int64[] memory v = rv.values;
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
