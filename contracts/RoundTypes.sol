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
