// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The deadlines of a round, in blocks (docs/protocol.md, "Deadlines"). Every step has
///         one; after it anyone may move the round on (drop who is missing) or cancel it (when
///         the coordinator is late), so no party can hold the others' deposits.
struct Windows {
    uint32 registration; // after createRound: registrations accepted (then the coordinator starts)
    uint32 submission; // every participants' step: a submission attempt, a dispute's openings and its accusations, the reveals, the blame openings
    uint32 coordinator; // the coordinator's time to start, publish, conclude or dispute
    uint32 challenge; // after an opening is posted: anyone may challenge it (0: openings unchecked)
}

/// @notice Parameters of a round (docs/protocol.md, "Life of a round").
/// @dev `slots` is the number of values each ciphertext carries (packed, `slotBits` B and
///      `slotWidth` W each, plus one check slot whose masks must cancel); the public price vector
///      has one entry per element of the price band, whose length the rule ties to its own layout.
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
    uint256 collateral; // each participant's deposit locked from `start` to the end (less: dropped at start)
    uint256 bond; // the coordinator's deposit locked from `start`, forfeited when it is proven at fault
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

/// @notice The phases of a round: Registering -> Iterating -> Concluded -> Settled, or Closed
///         (nothing traded, every deposit withdrawable) from any phase before Settled.
enum Phase {
    Registering,
    Iterating,
    Concluded,
    Settled,
    Closed
}

/// @notice The steps of an iteration: a submission attempt, its aggregation and publication, and,
///         when the decrypted check slot shows that the masks did not cancel, a dispute (each
///         submitter opens its masked plaintext and its check masks; then accusations), after
///         which the iteration is tried again without the culprits.
enum Step {
    Submitting,
    Aggregating,
    Disputing
}

/// @notice Why a participant left the round (`Dropped`).
enum DropReason {
    MissedSubmission, // did not submit before an attempt's deadline
    NoCollateral, // its deposit was below the round's collateral at start
    MissedOpening, // did not open its submission in a dispute
    Culprit // proven in a dispute to have submitted masks that do not cancel
}

/// @notice Why a party was named at fault (`Blamed`).
enum Fault {
    WithheldReveal, // stayed to the end and did not reveal its final values (forfeits its deposit)
    FalseOpening, // posted an opening of its ciphertext that a challenge disproved (forfeits)
    FalseCheck, // claimed check masks that its neighbour's proof contradicts (forfeits)
    SumCheated, // the only one that did not open in a blame step: it encrypted other values than it revealed (forfeits)
    NotOpened, // did not open in a blame step while others did not either: settled by the fallback, nothing forfeited
    CoordinatorLate, // the coordinator missed its deadline (forfeits its bond)
    CoordinatorFalseOpening, // a challenge disproved the coordinator's decryption (forfeits its bond)
    CoordinatorFalseSums, // every participant proved its ciphertext in a blame step: the decrypted sums were false (bond)
    Overdrawn // billed more than its deposit (it revealed more than it could pay): forfeits it, settled without its reveal
}

/// @dev A participant. Slot 0 is what `submit` writes; registration makes it non-zero so that every
///      later submission is a non-zero -> non-zero write.
struct Member {
    bytes24 submissionHash; // bytes24(keccak256(keccak256(ciphertext) || commitment))
    uint16 position; // 1-based registration order
    uint32 submittedIterationPlusOne;
    uint16 submittedAttempt; // the attempt of its latest submission
    // slot 1
    uint32 droppedBeforePlusOne; // the iteration it left in, plus one (0: active)
    uint32 memberIndexPlusOne; // its index in the allow-list or the creator's signature, plus one
    uint48 openedPlusOne; // the dispute (iteration << 16 | attempt, plus one) it opened its submission in
    bool culprit; // proven at fault: its deposit forfeited
    bool revealed; // revealed its values after conclusion
    bool cleared; // in a blame step: opened its final ciphertext and masks consistently
    // slot 2: bytes16(keccak256(point)) of its mask points Y(k) = a H_k
    bytes16 pointHash; // of the current iteration (posted one iteration ahead)
    bytes16 nextPointHash; // of the next iteration
    // slot 3
    bytes16 keyHash; // of its public key A = a G (registration)
    bytes16 checkHash; // of the check masks it claimed in the current dispute
    // slot 4
    bytes32 revealHash; // keccak256(keccak256(abi.encodePacked(values)) || ciphertext hash) of its reveal
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
    // slot 1
    uint16 submissions; // accepted submissions (or a dispute's openings) in the current attempt
    uint16 attempt; // attempts of the current iteration so far (a dropout or a dispute starts another)
    address coordinator;
    uint8 slotBits;
    uint16 slotWidth;
    uint32 maxIterations;
    // slot 2
    uint16 slots;
    uint16 participantCount;
    bool allowList;
    bool signedMembers;
    address gridAccount;
    uint64 deadline; // the block after which the current step is late
    // slot 3
    ISettlementRule rule;
    uint64 challengeUntil; // after an opening (conclusion, a blame step): last block at which it may be challenged
    uint16 revealed; // participants that revealed
    // slot 4: the current attempt's aggregate (while aggregating: the product so far)
    bytes28 aggregateHash;
    bool aggregatedAttempt; // the aggregate is of the current attempt, complete
    // slot 5: chunked aggregation
    uint16 absorbed; // submissions multiplied in so far
    uint16 cursor; // registration index the next chunk starts from
    uint64 revealUntil; // after conclusion: last block for the reveals
    uint64 blameUntil; // after a failed sum check: last block for the blame openings (0: none)
    // slot 6: an opening challenge in progress (one at a time)
    bytes28 challengeAcc; // hash of the accumulator rho^(prefix of n) mod n^2
    uint8 challengeStep; // 256-bit words of n processed
    address challenger;
    uint64 challengeDeadline; // the last block the challenge in progress may go on (then it is void)
    uint256 challengeKeyPlusOne; // the opening being challenged (RoundStorage keys), plus one
    Windows windows;
    address termsData; // SSTORE2 data contract 0x00 || terms (address(0): no terms)
    uint256 parentRoundId;
    uint256 collateral;
    uint256 bond;
    uint256 forfeited; // slashed and not yet shared out
    uint64[] priceFloor;
    uint64[] priceCap;
    uint64[] prices;
    int64[] finalSums;
    address[] participants;
    mapping(address => Member) members;
    mapping(address => uint256) balances; // the round's token ledger
    mapping(address => uint256) allowedPlusOne; // member index + 1 (allow-list)
    mapping(uint256 => bytes32) openings; // per opening key: keccak256(ciphertext || plaintext || rho)
}

/// @notice Why a round closed without trading.
enum CloseReason {
    ByCoordinator, // the coordinator closed it (e.g. its run did not converge)
    CoordinatorLate, // the coordinator missed a deadline; anyone cancelled
    TooFewParticipants, // dropouts left fewer than the privacy minimum
    OpeningDisproved, // a challenge showed a published decryption false
    DisputeUnresolved, // a dispute found nobody whose masks failed (its openings unchallenged)
    MasksDoNotCancel, // the masks did not cancel in a round whose openings cannot be checked
    RevealsDoNotAddUp, // the reveals cannot be checked against the sums in a round whose openings cannot be checked
    NotSettled // concluded but nobody settled it in time
}

/// @title IPrivateRounds
/// @notice Every event and error of the round contract (PrivateRounds and its modules), declared once.
interface IPrivateRounds {
    event RoundCreated(
        uint256 indexed roundId, address indexed coordinator, uint256 indexed parentRoundId, address keyData, RoundParams params
    );
    event PhaseChanged(uint256 indexed roundId, Phase from, Phase to);
    /// @notice A new step (or attempt) began; `deadline` is its last block.
    event StepChanged(uint256 indexed roundId, uint32 indexed iteration, Phase phase, Step step, uint16 attempt, uint64 deadline);
    /// @notice `keys`: its public key A = a G and its mask point of iteration 0, Y(0) = a H_0
    ///         (compressed secp256k1; only A in a round without a Paillier key but with pair lanes).
    event Registered(uint256 indexed roundId, address indexed participant, uint16 position, bytes keys);
    event Deposited(uint256 indexed roundId, address indexed account, uint256 amount, uint256 balance);
    event RoundStarted(uint256 indexed roundId, uint32 indexed iteration, uint256 participants, uint64[] prices);
    event Submitted(
        uint256 indexed roundId,
        uint32 indexed iteration,
        address indexed participant,
        uint16 attempt,
        bytes32 ciphertextHash,
        bytes32 commitment
    );
    /// @notice A participant's mask point for the next iteration.
    event MaskPoint(uint256 indexed roundId, uint32 indexed iteration, address indexed participant, bytes point);
    event PairMessages(uint256 indexed roundId, uint32 indexed iteration, address indexed participant, bytes messages);
    /// @notice A participant left the round in `iteration` and is settled by the mechanism's fallback.
    event Dropped(uint256 indexed roundId, uint32 indexed iteration, address indexed participant, DropReason reason);
    /// @notice A chunk of the attempt's submissions was multiplied in; `soFar` is the product so far.
    event AggregationProgress(uint256 indexed roundId, uint32 indexed iteration, uint256 absorbed, bytes soFar);
    event Aggregated(uint256 indexed roundId, uint32 indexed iteration, bytes aggregate);
    event Published(
        uint256 indexed roundId, uint32 indexed iteration, bytes plaintext, bytes opening, int64[] sums, uint64[] nextPrices
    );
    event Concluded(uint256 indexed roundId, uint32 indexed iteration, bytes plaintext, bytes opening, int64[] sums, uint64[] prices);
    /// @notice The decrypted check slot is not zero: the masks of this attempt did not cancel.
    event Disputed(uint256 indexed roundId, uint32 indexed iteration, uint16 attempt, bytes plaintext, bytes opening, uint64 check);
    /// @notice In a dispute: a submitter's masked plaintext, its opening and the check slot value of
    ///         its mask with each active neighbour (registration order).
    event CheckOpened(
        uint256 indexed roundId, uint32 indexed iteration, address indexed participant, bytes plaintext, bytes opening, uint64[] checks
    );
    /// @notice In a dispute: `accuser` proved its check value with `accused`, whose claim differs.
    event Accused(uint256 indexed roundId, uint32 indexed iteration, address indexed accused, address accuser);
    /// @notice `key`: the opening challenged (RoundStorage: an attempt's aggregate, a dispute opening, a blame opening).
    event Challenged(uint256 indexed roundId, uint256 indexed key, address indexed challenger);
    event OpeningConfirmed(uint256 indexed roundId, uint256 indexed key);
    event OpeningDisproved(uint256 indexed roundId, uint256 indexed key, address indexed challenger);
    event Closed(uint256 indexed roundId, uint32 indexed iteration, CloseReason reason, address by);
    /// @notice A participant revealed its final values (or, dropped, those of its last submission),
    ///         opening its commitment; the values are in the call's input, where the settlement's
    ///         caller and an auditor read them (an event would charge ~8 gas a byte more for them).
    event Revealed(uint256 indexed roundId, address indexed participant);
    event Bill(uint256 indexed roundId, address indexed participant, int256[] items);
    event Payment(uint256 indexed roundId, uint32 indexed iteration, address indexed account, int256 amount);
    event Settled(uint256 indexed roundId, uint32 indexed iteration);
    event Withdrawn(uint256 indexed roundId, address indexed account, uint256 amount);
    /// @notice The reveals cannot be checked against the decrypted sums (a mismatch, or a reveal
    ///         withheld): every participant that revealed must open its final ciphertext and
    ///         masks until `until`.
    event BlameStarted(uint256 indexed roundId, uint32 indexed iteration, uint64 until);
    event BlameOpened(uint256 indexed roundId, address indexed participant);
    /// @notice A party named at fault, and what it forfeited (shared among the others at the end).
    event Blamed(uint256 indexed roundId, address indexed culprit, uint256 forfeited, Fault fault);
    /// @notice A share of the forfeited deposits, credited to a participant at the end of the round.
    event Compensated(uint256 indexed roundId, address indexed account, uint256 amount);

    error UnknownRound(uint256 roundId);
    error NotCoordinator(address caller, address coordinator);
    error WrongPhase(uint256 roundId, Phase current, Phase expected);
    error WrongStep(uint256 roundId, Step current, Step expected);
    error AlreadyRegistered(address participant);
    error NotRegistered(address account);
    error NotMember(address account);
    error BadSignature(address account);
    error GridAccountCannotRegister(address gridAccount);
    error KeysLength(uint256 given, uint256 expected);
    error TooFewParticipants(uint256 count, uint256 minimum);
    error TooManyParticipants(uint256 maximum);
    error DeadlinePassed(uint64 deadline);
    error DeadlineNotPassed(uint64 deadline);
    error NotActive(address participant);
    error WrongIteration(uint32 given, uint32 current);
    error AlreadySubmitted(address participant, uint32 iteration);
    error CiphertextLength(uint256 given, uint256 expected);
    error CiphertextOutOfRange(address participant);
    error CiphertextIsOne(address participant);
    error CiphertextMultipleOfN(address participant);
    error MaskPointInvalid(address participant);
    error PairMessagesLength(uint256 given, uint256 expected);
    error NotMissing(address participant);
    error MissingCount(uint256 given, uint256 expected);
    error SubmissionCount(uint256 given, uint256 expected);
    error SubmissionMismatch(address participant, uint32 iteration);
    error NoKey(uint256 roundId);
    error AlreadyAggregated(uint256 roundId, uint32 iteration);
    error NotAggregated(uint256 roundId, uint32 iteration);
    error AggregateMismatch(uint256 roundId, uint32 iteration);
    error PlaintextLength(uint256 given, uint256 expected);
    error PlaintextOutOfRange(uint256 roundId, uint32 iteration);
    error OpeningLength(uint256 given, uint256 expected);
    error OpeningNotCanonical(uint256 roundId, uint32 iteration);
    error MasksDoNotCancel(uint256 roundId, uint32 iteration, uint64 check);
    error MasksCancel(uint256 roundId, uint32 iteration);
    error PriceLength(uint256 given, uint256 expected);
    error PriceOutOfBand(uint256 index, uint64 price, uint64 floor, uint64 cap);
    error IterationCapReached(uint32 maxIterations);
    error NotInDispute(address participant);
    error AlreadyOpened(address participant);
    error ChecksLength(uint256 given, uint256 expected);
    /// @notice A dispute opening that does not hold: `part` 0 the submission, 1 the check masks.
    error CheckOpeningInvalid(address participant, uint256 part);
    error NotNeighbours(address accuser, address accused);
    error NoMismatch(address accuser, address accused);
    /// @notice An accusation that does not hold: `part` 0 the key, 1 the accuser's mask point,
    ///         2 the accused's mask point or the pair point, 4 the check values.
    error AccusationInvalid(address accuser, uint256 part);
    error AlreadyCulprit(address participant);
    error NoChallenges(uint256 roundId);
    error ChallengeWindowOpen(uint64 until);
    error ChallengeWindowClosed(uint64 until);
    error ChallengeInProgress(uint256 roundId, uint256 key);
    error ChallengeMismatch(uint256 roundId, uint256 key);
    error NothingToReveal(address participant);
    error AlreadyRevealed(address participant);
    error RevealWindowOpen(uint64 until);
    error RevealCount(uint256 given, uint256 expected);
    error RevealLength(address participant, uint256 given, uint256 expected);
    error RevealOutOfRange(address participant, uint256 index);
    error CommitmentMismatch(address participant);
    error RevealMismatch(address participant);
    error NoBlame(uint256 roundId);
    error NotInBlame(address participant);
    error AlreadyCleared(address participant);
    error MasksLength(uint256 given, uint256 expected);
    /// @notice A blame opening that does not hold: `part` 0 the reveal, 1 the key, 2 its mask point,
    ///         3 + q its q-th neighbour's pair mask, 3 + degree the masked plaintext.
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
