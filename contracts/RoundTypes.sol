// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The deadlines of a round, in blocks (docs/protocol.md, "Deadlines"). Every phase has
///         one; after it anyone may move the round on (drop who is missing) or cancel it (when
///         the coordinator is late), so no party can hold the others' deposits.
struct Windows {
    uint32 registration; // after createRound: registrations accepted (then the coordinator starts)
    uint32 submission; // per iteration (and the sharing step): participants submit
    uint32 recovery; // per iteration, after the submissions: survivors post recovery partials
    uint32 coordinator; // the coordinator's time to start, publish, conclude or settle
    uint32 challenge; // after conclusion: anyone may challenge an opening (0: openings unchecked)
}

/// @notice Parameters of a round (docs/protocol.md, "Life of a round").
/// @dev `slots` is the number of values each ciphertext carries (packed, `slotBits` B and
///      `slotWidth` W each); the public price vector has one entry per element of the price band,
///      whose length the rule ties to its own layout.
struct RoundParams {
    ISettlementRule rule; // the mechanism's stateless settlement rule
    uint256 parentRoundId; // 0: a top-level round; else the round this one is nested in
    bytes n; // Paillier modulus, big-endian, a multiple of 32 bytes, odd; empty: no key (commit-reveal only)
    uint16 slots; // values per ciphertext
    uint8 slotBits; // B
    uint16 slotWidth; // W
    uint32 maxIterations;
    uint64[] priceFloor; // per price, lower bound
    uint64[] priceCap; // per price, upper bound
    address gridAccount; // the account that balances the market with the grid
    string mechanism; // the mechanism's name and public update rule (JSON) for auditors; not interpreted here
    uint16 pairLanes; // 64-bit pad-encrypted words per other participant in submit's pairMessages (0: none)
    bytes terms; // the mechanism's terms (ABI-encoded), validated and read by the rule
    address[] members; // who may register (position = member index); empty: `signedMembers` or anyone
    bool signedMembers; // register needs the creator's signature of (chain, contract, round, account, index)
    uint16 threshold; // Shamir threshold of the mask secrets (0: no dropout recovery, masks without it)
    Windows windows;
}

/// @notice What a settlement rule sees of a concluded round.
struct SettleContext {
    uint256 roundId;
    address coordinator;
    address gridAccount;
    uint64[] prices; // the final public price vector
    uint64[] priceFloor;
    uint64[] priceCap;
    uint16 slots;
    uint16 pairLanes;
    uint256 revealLength; // values per participant in `settle`'s flat `values`
    address[] participants; // registration order (the order of the reveals)
    Standing[] standing; // per participant: in the final sums, or dropped (with or without a reveal)
    uint256[] memberIndex; // each participant's position in `members` (open rounds: registration order)
    bytes terms;
}

/// @title ISettlementRule
/// @notice A mechanism's settlement rule: a thin, stateless contract that validates the mechanism's
///         part of a round's parameters and computes its payments. The generic core
///         (PrivateRounds) checks every reveal against its commitment and the decrypted sums
///         before it asks the rule, checks that the payments sum to zero, and books them.
/// @dev Sign convention: a positive amount is paid by the account (debited from its ledger).
///      The reveals travel as one flat `int256[]` (the ABI's 32-byte words, which the core passes
///      on with one copy and the rule reads without per-element decoding), not as `int64[][]`,
///      whose element-by-element validation and nested offsets cost ~500 gas per value read.
interface ISettlementRule {
    /// @notice The mechanism's registry name (e.g. "tariff").
    /// @return name the name.
    function mechanism() external pure returns (string memory name);

    /// @notice Names of the items of each participant's bill (`Bill` events), possibly none.
    /// @return items one name per item.
    function billItems() external pure returns (string[] memory items);

    /// @notice Validates the mechanism's part of a round's parameters; reverts with a custom error
    ///         (e.g. `BadParameters(reason)`) when they do not fit the mechanism.
    /// @param p the round parameters as given to `createRound`.
    /// @param coordinator the round's creator.
    function configure(RoundParams calldata p, address coordinator) external view;

    /// @notice The number of values in each participant's reveal; its first `slots` values are the
    ///         ones that were encrypted (checked against the decrypted sums).
    /// @param slots values per ciphertext.
    /// @param pairLanes pair-message words per other participant.
    /// @param participants registered participants.
    /// @return length values per reveal.
    function revealLength(uint16 slots, uint16 pairLanes, uint256 participants) external pure returns (uint256 length);

    /// @notice The payments of a concluded round.
    /// @param ctx the round as concluded.
    /// @param values the reveals, participant-major: participant i's value j is
    ///        `values[i * ctx.revealLength + j]`, each within int64 (checked by the core).
    /// @return amounts per participant, positive = paid by it.
    /// @return payees the other accounts the settlement pays or charges.
    /// @return payeeAmounts their amounts, positive = paid by them; all amounts sum to zero.
    /// @return bills per participant its bill items (`billItems`), or no bills at all.
    function settle(SettleContext calldata ctx, int256[] calldata values)
        external
        view
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts, int256[][] memory bills);
}

/// @notice How a participant ends a round, as its rule sees it.
enum Standing {
    Final, // took part to the end: its reveal opens its final commitment and is in the final sums
    DroppedRevealed, // dropped out; its reveal opens its last accepted commitment (the rule's fallback)
    DroppedSilent // dropped out without a reveal (its values are zero)
}

/// @notice The phases of a round: Registering -> (Sharing, in rounds with dropout recovery) ->
///         Iterating -> Concluded -> Settled, or Closed (nothing traded, every deposit
///         withdrawable) from any phase before Settled.
enum Phase {
    Registering,
    Sharing,
    Iterating,
    Concluded,
    Settled,
    Closed
}

/// @notice The steps of an iteration: submissions, then (with dropout recovery) the survivors'
///         recovery partials, then aggregation and publication.
enum Step {
    Submitting,
    Recovering,
    Aggregating
}

/// @dev A participant. Slot 0 is what `submit` writes; registration makes it non-zero so that every
///      later submission is a non-zero -> non-zero write.
struct Member {
    bytes26 submissionHash; // bytes26(keccak256(keccak256(ciphertext) || commitment))
    uint16 position; // 1-based registration order
    uint32 submittedIterationPlusOne;
    // slot 1
    uint32 droppedBeforePlusOne; // the first iteration it missed, plus one (0: active); 1 = dropped while sharing
    uint32 recoveredIterationPlusOne; // the latest iteration it posted recovery partials for, plus one
    uint32 memberIndexPlusOne; // its index in the allow-list or the creator's signature, plus one
    bool shared; // posted its shares (rounds with dropout recovery)
    bool cleared; // in a blame step: opened its final ciphertext and masks consistently
    bytes16 materialHash; // keccak256 of its sharing post (whose commitments start with a G and b G)
    // slot 2 (rounds with dropout recovery): bytes16(keccak256(point)) of its mask points
    bytes16 pointHash; // of the current iteration (posted one iteration ahead)
    bytes16 nextPointHash; // of the next iteration
}

/// @dev A round's state (PrivateRounds and its modules share it through RoundStorage).
struct Round {
    // slot 0: everything submit() reads
    address keyData; // SSTORE2 data contract 0x00 || n^2 || n (address(0): no key)
    Phase phase;
    Step step;
    uint32 iteration;
    uint8 nWords; // len(n) / 32 (at most 32)
    bool exists;
    uint16 active; // participants still in the round (not dropped)
    uint16 pairLanes;
    uint16 submissions; // accepted submissions (or shares) in the current iteration (step)
    // slot 1
    address coordinator;
    uint8 slotBits;
    uint16 slotWidth;
    uint32 maxIterations;
    uint16 slots;
    uint16 participantCount;
    bool allowList;
    bool signedMembers;
    // slot 2
    address gridAccount;
    uint64 deadline; // the block after which the current step is late
    uint16 threshold;
    uint16 recoveries; // survivors that posted recovery partials this iteration
    // slot 3
    ISettlementRule rule;
    uint64 challengeUntil; // after conclusion: last block at which an opening may be challenged
    // slot 4: the current iteration's aggregate (while aggregating: the product so far)
    bytes28 aggregateHash;
    uint32 aggregatedIterationPlusOne;
    // slot 5: chunked aggregation
    uint16 absorbed; // submissions multiplied in so far
    uint16 cursor; // registration index the next chunk starts from
    uint64 blameUntil; // after a sum mismatch at settlement: last block for the blame openings (0: none)
    // slot 6: an opening challenge in progress (one at a time)
    bytes28 challengeAcc; // hash of the accumulator rho^(prefix of n) mod n^2
    uint32 challengeIterationPlusOne;
    // slot 7
    address challenger;
    uint8 challengeStep; // 256-bit words of n processed
    Windows windows;
    address termsData; // SSTORE2 data contract 0x00 || terms (address(0): no terms)
    uint256 parentRoundId;
    uint64[] priceFloor;
    uint64[] priceCap;
    uint64[] prices;
    int64[] finalSums;
    address[] participants;
    bytes32[] maskKeys;
    mapping(address => Member) members;
    mapping(address => uint256) balances; // the round's token ledger
    mapping(address => uint256) allowedPlusOne; // member index + 1 (allow-list)
    mapping(uint32 => bytes32) openings; // per iteration: keccak256(aggregate, plaintext, opening, corrections)
    mapping(bytes32 => bool) ciphertextSeen; // every ciphertext hash accepted in the round
    mapping(bytes32 => bool) maskKeySeen;
}

/// @notice Why a round closed without trading.
enum CloseReason {
    ByCoordinator, // the coordinator closed it (e.g. its run did not converge)
    CoordinatorLate, // the coordinator missed a deadline; anyone cancelled
    TooFewParticipants, // dropouts left fewer than the privacy minimum
    OpeningDisproved, // a challenge showed a published decryption false
    BlameUnresolved // after a sum mismatch no participant opened its final ciphertext consistently
}

/// @title IPrivateRounds
/// @notice Every event and error of the round contract (PrivateRounds and its modules), declared once.
interface IPrivateRounds {
    event RoundCreated(
        uint256 indexed roundId, address indexed coordinator, uint256 indexed parentRoundId, address keyData, RoundParams params
    );
    event PhaseChanged(uint256 indexed roundId, Phase from, Phase to);
    /// @notice A new step (or phase) began; `deadline` is its last block.
    event StepChanged(uint256 indexed roundId, uint32 indexed iteration, Phase phase, Step step, uint64 deadline);
    event Registered(uint256 indexed roundId, address indexed participant, uint16 position, bytes32 maskKey);
    /// @notice A participant's shares of its mask secrets, each sealed to its holder, and its first mask point.
    event Shared(uint256 indexed roundId, address indexed participant, bytes material);
    event Deposited(uint256 indexed roundId, address indexed account, uint256 amount, uint256 balance);
    event RoundStarted(uint256 indexed roundId, uint32 indexed iteration, uint256 participants, uint64[] prices);
    event Submitted(
        uint256 indexed roundId,
        uint32 indexed iteration,
        address indexed participant,
        bytes32 ciphertextHash,
        bytes32 commitment
    );
    /// @notice A participant's mask point for the next iteration (rounds with dropout recovery).
    event MaskPoint(uint256 indexed roundId, uint32 indexed iteration, address indexed participant, bytes point);
    event PairMessages(uint256 indexed roundId, uint32 indexed iteration, address indexed participant, bytes messages);
    /// @notice A participant missed a deadline and left the round from `iteration` on; `inMasks`:
    ///         the iteration's masks included it (the survivors recover them).
    event Dropped(uint256 indexed roundId, uint32 indexed iteration, address indexed participant, bool inMasks);
    /// @notice A survivor's partial evaluations for removing the iteration's masks.
    event Recovered(uint256 indexed roundId, uint32 indexed iteration, address indexed participant, bytes partials);
    /// @notice A chunk of the iteration's submissions was multiplied in; `soFar` is the product so far.
    event AggregationProgress(uint256 indexed roundId, uint32 indexed iteration, uint256 absorbed, bytes soFar);
    event Aggregated(uint256 indexed roundId, uint32 indexed iteration, bytes aggregate);
    event Published(
        uint256 indexed roundId,
        uint32 indexed iteration,
        bytes plaintext,
        bytes opening,
        uint64[] corrections,
        int64[] sums,
        uint64[] nextPrices
    );
    event Concluded(
        uint256 indexed roundId,
        uint32 indexed iteration,
        bytes plaintext,
        bytes opening,
        uint64[] corrections,
        int64[] sums,
        uint64[] prices
    );
    event Challenged(uint256 indexed roundId, uint32 indexed iteration, address indexed challenger);
    event OpeningConfirmed(uint256 indexed roundId, uint32 indexed iteration);
    event OpeningDisproved(uint256 indexed roundId, uint32 indexed iteration, address indexed challenger);
    event Closed(uint256 indexed roundId, uint32 indexed iteration, CloseReason reason, address by);
    event Bill(uint256 indexed roundId, address indexed participant, int256[] items);
    event Payment(uint256 indexed roundId, uint32 indexed iteration, address indexed account, int256 amount);
    event Settled(uint256 indexed roundId, uint32 indexed iteration);
    event Withdrawn(uint256 indexed roundId, address indexed account, uint256 amount);
    /// @notice The revealed sums differ from the decrypted ones: every participant that stayed to
    ///         the end must open its final ciphertext and masks until `until`.
    event BlameStarted(uint256 indexed roundId, uint32 indexed iteration, uint64 until);
    event BlameOpened(uint256 indexed roundId, address indexed participant);
    /// @notice A participant that did not clear itself in the blame step, its deposit slashed and
    ///         shared among those that did; or, when every participant cleared itself, the
    ///         coordinator (whose corrections were wrong), with nothing slashed.
    event Blamed(uint256 indexed roundId, address indexed culprit, uint256 slashed);

    error UnknownRound(uint256 roundId);
    error NotCoordinator(address caller, address coordinator);
    error WrongPhase(uint256 roundId, Phase current, Phase expected);
    error WrongStep(uint256 roundId, Step current, Step expected);
    error AlreadyRegistered(address participant);
    error NotRegistered(address account);
    error NotMember(address account);
    error BadSignature(address account);
    error GridAccountCannotRegister(address gridAccount);
    error MaskKeyRejected(bytes32 maskKey);
    error MaskKeyRepeated(bytes32 maskKey);
    error TooFewParticipants(uint256 count, uint256 minimum);
    error TooManyParticipants(uint256 maximum);
    error DeadlinePassed(uint64 deadline);
    error DeadlineNotPassed(uint64 deadline);
    error NotActive(address participant);
    error AlreadyShared(address participant);
    error SharesLength(uint256 given, uint256 maximum);
    error WrongIteration(uint32 given, uint32 current);
    error AlreadySubmitted(address participant, uint32 iteration);
    error CiphertextLength(uint256 given, uint256 expected);
    error CiphertextOutOfRange(address participant);
    error CiphertextIsOne(address participant);
    error CiphertextMultipleOfN(address participant);
    error CiphertextRepeated(address participant, bytes32 ciphertextHash);
    error MaskPointInvalid(address participant);
    error PairMessagesLength(uint256 given, uint256 expected);
    error NotMissing(address participant);
    error MissingCount(uint256 given, uint256 expected);
    error NoRecovery(uint256 roundId);
    error AlreadyRecovered(address participant, uint32 iteration);
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
    error OpeningNotCanonical(uint256 roundId, uint32 iteration);
    error CorrectionsLength(uint256 given, uint256 expected);
    error PriceLength(uint256 given, uint256 expected);
    error PriceOutOfBand(uint256 index, uint64 price, uint64 floor, uint64 cap);
    error IterationCapReached(uint32 maxIterations);
    error NoChallenges(uint256 roundId);
    error ChallengeWindowOpen(uint64 until);
    error ChallengeWindowClosed(uint64 until);
    error ChallengeInProgress(uint256 roundId, uint32 iteration);
    error ChallengeMismatch(uint256 roundId, uint32 iteration);
    error RevealCount(uint256 given, uint256 expected);
    error RevealLength(address participant, uint256 given, uint256 expected);
    error RevealOutOfRange(address participant, uint256 index);
    error CommitmentMismatch(address participant);
    error RevealedSumMismatch(uint256 slot, int256 revealed, int256 decrypted);
    error NoBlame(uint256 roundId);
    error NotInBlame(address participant);
    error AlreadyCleared(address participant);
    error MasksLength(uint256 given, uint256 expected);
    /// @notice A blame opening that does not hold: `part` 0 the commitment, 1 the keys, 2 its mask
    ///         point, 3 its self mask, 4 + k its k-th pair mask, 4 + degree the masked plaintext.
    error BlameOpeningInvalid(address participant, uint256 part);
    error SettlementImbalance(int256 sum);
    error SettlementShape(uint256 participants, uint256 amounts, uint256 payees, uint256 payeeAmounts, uint256 bills);
    error RoundClosed(uint256 roundId);
    error InsufficientDeposit(address account, uint256 balance, uint256 needed);
    error AlreadySettled(uint256 roundId);
    error BadParameters(string reason);
    error ZeroAmount();
    error DataStoreFailed();
}
