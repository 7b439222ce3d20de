// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {PaillierMath} from "./PaillierMath.sol";
import {RoundSettlement} from "./RoundSettlement.sol";
import {RoundStorage} from "./RoundStorage.sol";
import {ISettlementRule, Member, Phase, Round, RoundParams} from "./RoundTypes.sol";

/// @title PrivateRounds
/// @notice The generic private round of every gridshare mechanism: registration (open or by an
///         allow-list), per-iteration submissions (a Paillier ciphertext, or none in rounds without
///         a key, a hiding commitment and optional pair messages), on-chain homomorphic
///         aggregation, publication of decrypted aggregates with opening checks and the next public
///         prices, conclusion, settlement through the round's stateless rule contract, and a
///         per-round token ledger. Rounds may nest (a parent round id). See docs/protocol.md.
/// @dev Every phase change passes through `_setPhase`, every ledger move through `_update`
///      (RoundStorage); the settlement runs in the RoundSettlement module. Every event
///      and error is declared once, in IPrivateRounds. Sign convention of amounts: positive = paid
///      by the account.
contract PrivateRounds is RoundStorage, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

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

    uint256 internal constant MIN_PARTICIPANTS = 2;
    uint256 internal constant MAX_MODULUS_BYTES = 1024;
    uint256 internal constant MAX_DATA_BYTES = 24_000; // SSTORE2 data below the 24,576-byte code limit

    /// @notice The settlement token.
    IERC20 public immutable token;
    /// @notice The stateless Paillier arithmetic this contract created.
    PaillierMath public immutable paillier;
    /// @notice The settlement module this contract created and runs by DELEGATECALL.
    address public immutable settlement;
    /// @notice Number of rounds created; round ids are 1..roundCount.
    uint256 public roundCount;

    /// @param token_ the ERC-20 settlement token.
    constructor(IERC20 token_) {
        token = token_;
        paillier = new PaillierMath();
        settlement = address(new RoundSettlement());
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
            mapping(address => uint256) storage allowed = r.allowedPlusOne;
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
        _requirePhase(r, roundId, Phase.Registering);
        if (msg.sender == r.gridAccount) revert GridAccountCannotRegister(msg.sender);
        if (r.allowList && r.allowedPlusOne[msg.sender] == 0) revert NotMember(msg.sender);
        Member storage m = r.members[msg.sender];
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
        uint256 balance = _update(r, msg.sender, -int256(amount));
        emit Deposited(roundId, msg.sender, amount, balance);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Closes registration and opens iteration 0 with the first public prices (coordinator only).
    /// @param roundId the round.
    /// @param prices0 the first price vector, one entry per element of the price band and inside it.
    function start(uint256 roundId, uint64[] calldata prices0) external {
        Round storage r = _round(roundId);
        _requireCoordinator(r);
        _requirePhase(r, roundId, Phase.Registering);
        uint256 count = r.participantCount;
        if (count < MIN_PARTICIPANTS) revert TooFewParticipants(count, MIN_PARTICIPANTS);
        _checkPrices(r, prices0);
        r.prices = prices0;
        _setPhase(r, roundId, Phase.Iterating);
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
        Member memory m = r.members[msg.sender];
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
        r.members[msg.sender] =
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
        _requirePhase(r, roundId, Phase.Iterating);
        if (r.keyData == address(0)) revert NoKey(roundId);
        uint32 k = r.iteration;
        if (r.aggregatedIterationPlusOne == k + 1) revert AlreadyAggregated(roundId, k);
        uint256 count = r.participantCount;
        if (ciphertexts.length != count) revert SubmissionCount(ciphertexts.length, count);
        if (commitments.length != count) revert SubmissionCount(commitments.length, count);
        agg = _product(r, k, ciphertexts, commitments);
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
        _setPhase(r, roundId, Phase.Concluded);
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
        _setPhase(r, roundId, Phase.Closed);
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
        (roundId, values, salts, ciphertextHashes); // read by the module, from this call's calldata
        _delegate(settlement);
    }

    /// @notice Takes the caller's whole ledger balance out of the round (before the round starts,
    ///         after settlement or after the round was closed).
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
        return _rounds[roundId].allowedPlusOne[account];
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
        Member memory m = _rounds[roundId].members[account];
        return (m.submissionHash, m.position, m.submittedIterationPlusOne);
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
            if (pr.coordinator != msg.sender && pr.members[msg.sender].position == 0) {
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
        _requirePhase(r, roundId, Phase.Iterating);
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

    /// @dev The product of the iteration's ciphertexts (each checked against its participant's
    ///      stored submission hash).
    function _product(
        Round storage r,
        uint32 k,
        bytes[] calldata ciphertexts,
        bytes32[] calldata commitments
    ) internal view returns (bytes memory agg) {
        uint256 L2 = uint256(r.nWords) * 64;
        for (uint256 i = 0; i < ciphertexts.length; ++i) {
            _absorb(r, r.participants[i], k, ciphertexts[i], commitments[i], L2);
        }
        agg = paillier.product(r.keyData, ciphertexts);
    }

    /// @dev Checks a ciphertext and its commitment against the participant's stored hash.
    function _absorb(Round storage r, address who, uint32 k, bytes calldata ct, bytes32 commitment, uint256 len)
        internal
        view
    {
        Member memory m = r.members[who];
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
