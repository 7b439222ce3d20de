// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

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
    bool verifyOpenings; // check every decryption's opening on chain
    string mechanism; // the mechanism's name and public update rule (JSON) for auditors; not interpreted here
    uint16 pairLanes; // 64-bit pad-encrypted words per other participant in submit's pairMessages (0: none)
    bytes terms; // the mechanism's terms (ABI-encoded), validated and read by the rule
    address[] members; // who may register (position = member index); empty: anyone
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

/// @notice The phases of a round: Registering -> Iterating -> Concluded -> Settled, or Closed
///         (nothing traded, every deposit withdrawable) from any phase before Settled.
enum Phase {
    Registering,
    Iterating,
    Concluded,
    Settled,
    Closed
}

/// @dev One storage slot per participant; registration makes it non-zero so that every later
///      submission is a non-zero -> non-zero write.
struct Member {
    bytes26 submissionHash; // bytes26(keccak256(keccak256(ciphertext) || commitment))
    uint16 position; // 1-based registration order
    uint32 submittedIterationPlusOne;
}

/// @dev A round's state in PrivateRounds (read and written by it and by the RoundSettlement library).
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
    mapping(address => Member) members;
    mapping(address => uint256) balances; // the round's token ledger
    mapping(address => uint256) allowedPlusOne; // member index + 1 (allow-list)
}

/// @title IPrivateRounds
/// @notice Every event and error of the round contract (PrivateRounds and its RoundSettlement
///         library), declared once.
interface IPrivateRounds {
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

}
