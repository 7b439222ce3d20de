// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {PrivateRounds} from "./PrivateRounds.sol";
import {StorageSettlement, StorageTermsCodec} from "./StorageSettlement.sol";

/// @title StorageMarket
/// @notice Shared-storage renting with peer-to-peer trading (paper A) on top of the generic private
///         rounds. The coordinator is the storage operator: its Paillier key decrypts the aggregate
///         (C^E, C^P, throughput, net grid per period) that the two-block ADMM iterates on; the
///         public price vector is the pair of capacity rents (energy, power). Pair messages carry the
///         pad-encrypted P2P coordination between prosumers. Settlement books rents and usage fees to
///         the operator, transmission fees to the P2P centre, grid energy against the grid account and
///         the P2P trades between the prosumers.
/// @dev Units: energy int64 of 1e-6 kWh (power 1e-6 kW), prices uint64 of 1e-6 token per kWh (per kW
///      for the power rent), token amounts in 18-decimal base units, amount = price * quantity * 1e6.
///      Positive amounts are credits. Reveal layout per participant (registration order), T periods:
///      [C^E, C^P, throughput, net grid[0..T-1]] then, if the round has pair lanes, for every other
///      participant q in registration order: trade[T] (sale from me to q; negative = purchase) and
///      priceHalf[T] (my half of the pair price, 1e-6 token per kWh).
///      The terms validation and the settlement arithmetic run in a `StorageSettlement` this contract
///      creates in its constructor (`settlementCalculator`), which keeps this contract's code well
///      below the EIP-170 limit; its reverts (BadParameters, NegativeQuantity, CapacityExceeded,
///      TradeMismatch) are re-raised unchanged.
contract StorageMarket is PrivateRounds, StorageTermsCodec {
    /// @notice Token base units per (1e-6 token/kWh x 1e-6 kWh).
    int256 public constant UNIT = AMOUNT_UNIT;

    /// @notice The terms of a storage round (`RoundParams.terms = abi.encode(Terms)`).
    struct Terms {
        address operator; // receives capacity rents and usage fees (must be the coordinator)
        address centre; // P2P centre: receives transmission fees
        address[] members; // prosumers allowed to register; member index = position here
        uint64 energyCap; // shared store energy capacity, 1e-6 kWh
        uint64 powerCap; // power capacity, 1e-6 kW
        uint64 capacitySlack; // tolerance on the sums of revealed capacities, 1e-6
        uint64 usagePrice; // 1e-6 token per kWh of shared-storage throughput (to the operator)
        uint64[] storageFee; // per member: transmission fee to/from the store, 1e-6 token/kWh (to the centre)
        uint64[] pairFee; // members^2, row-major [buyer * M + seller]: fee paid by the buyer (to the centre)
        uint64[] gridBuy; // per period: retail price (the prosumer buys from the grid account)
        uint64[] gridSell; // per period: feed-in price
    }

    /// @dev Words at the end of the settlement calculator's input (StorageSettlement.settlement).
    uint256 internal constant IN_TAIL = 8;

    /// @dev The stateless terms validator and settlement calculator, created in the constructor.
    StorageSettlement internal immutable SETTLEMENT;

    /// @dev Per round: the data contract whose code is 0x00 || abi.encode(Terms) (SSTORE2), validated
    ///      once in `_configure` and read in place (no decoder) at settlement.
    mapping(uint256 => address) internal _termsData;
    mapping(uint256 => mapping(address => uint256)) internal _memberIndexPlusOne;

    /// @notice One participant's settled bill by item (token base units, positive = credit).
    event Bill(
        uint256 indexed roundId,
        address indexed participant,
        int256 rent,
        int256 usage,
        int256 transmission,
        int256 grid,
        int256 p2p
    );

    // raised by the settlement calculator with these signatures, re-raised here unchanged
    error NotMember(address account);
    error NegativeQuantity(address participant, uint256 index);
    error CapacityExceeded(uint256 which, int256 total, uint256 limit);
    error TradeMismatch(address a, address b, uint256 period);

    /// @param token_ the ERC-20 settlement token.
    constructor(IERC20 token_) PrivateRounds(token_) {
        SETTLEMENT = new StorageSettlement();
    }

    // ------------------------------------------------------------------ views

    /// @notice The terms a round was created with.
    /// @param roundId the round.
    /// @return data abi.encode(Terms) exactly as given to `createRound`.
    function terms(uint256 roundId) external view returns (bytes memory data) {
        _round(roundId);
        return _loadTerms(_termsData[roundId]);
    }

    /// @notice The member index of an account in a round's terms.
    /// @param roundId the round.
    /// @param account the account.
    /// @return indexPlusOne its position in `Terms.members` plus one (0: not a member).
    function memberIndex(uint256 roundId, address account) external view returns (uint256 indexPlusOne) {
        _round(roundId);
        return _memberIndexPlusOne[roundId][account];
    }

    // ------------------------------------------------------------------ mechanism hooks

    /// @dev Validates the terms in the calculator (`StorageSettlement.checkTerms`: a well-formed
    ///      abi.encode(Terms), every address and uint64 in range; T = gridBuy.length = gridSell.length
    ///      >= 1, periods = 3 + T, pairLanes in {0, T}, two rents (price band length 2), at least two
    ///      members with one storage fee each and members^2 pair fees, gridSell <= gridBuy, operator =
    ///      coordinator, centre non-zero), then that the members are distinct.
    function _configure(uint256 roundId, RoundParams calldata p) internal override {
        // the call's input: selector, periods, pairLanes, price band length, coordinator, then the
        // terms as a bytes at `t` (kept for the member indices and the data contract)
        bytes calldata terms_ = p.terms;
        uint256 periods = p.periods;
        uint256 lanes = p.pairLanes;
        uint256 prices = p.priceFloor.length;
        uint256 selector = uint32(StorageSettlement.checkTerms.selector);
        uint256 data;
        bytes memory t;
        assembly ("memory-safe") {
            data := mload(0x40)
            mstore(data, selector)
            mstore(add(data, 32), periods)
            mstore(add(data, 64), lanes)
            mstore(add(data, 96), prices)
            mstore(add(data, 128), caller())
            t := add(data, 160)
            mstore(t, terms_.length)
            calldatacopy(add(t, 32), terms_.offset, terms_.length)
            mstore(0x40, add(add(t, 32), and(add(terms_.length, 31), not(31))))
        }
        _callSettlement(data + 28, 164 + terms_.length);
        (uint256 members, uint256 M) = _array(t, F_MEMBERS);
        mapping(address => uint256) storage index = _memberIndexPlusOne[roundId];
        for (uint256 i = 0; i < M; ++i) {
            address a = address(uint160(_at(t, members, i)));
            if (index[a] != 0) revert BadParameters("duplicate member");
            index[a] = i + 1;
        }
        _termsData[roundId] = _storeKey(t, "");
    }

    /// @dev Only the members of the terms may register.
    function _beforeRegister(uint256 roundId, address account) internal view override {
        if (_memberIndexPlusOne[roundId][account] == 0) revert NotMember(account);
    }

    /// @dev 3 + T, plus 2 T per other participant if the round has pair lanes.
    function _revealLength(uint256 roundId) internal view override returns (uint256 len) {
        Round storage r = _rounds[roundId];
        len = r.periods;
        uint256 count = r.participantCount;
        if (r.pairLanes != 0 && count > 1) len += 2 * (len - HEAD) * (count - 1);
    }

    /// @dev payees = [operator, centre, gridAccount].
    function _settlementAmounts(uint256 roundId, int64[][] memory values)
        internal
        view
        override
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts)
    {
        (amounts, payees, payeeAmounts,) = _compute(roundId, values);
    }

    /// @dev As `_settlementAmounts`, and emits one `Bill` per participant.
    function _settle(uint256 roundId, int64[][] memory values)
        internal
        override
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts)
    {
        int256[] memory bill;
        (amounts, payees, payeeAmounts, bill) = _compute(roundId, values);
        address[] storage parts = _rounds[roundId].participants;
        for (uint256 i = 0; i < amounts.length; ++i) {
            uint256 o = ITEMS * i;
            emit Bill(
                roundId,
                parts[i],
                _get(bill, o + RENT),
                _get(bill, o + USAGE),
                _get(bill, o + TRANSMISSION),
                _get(bill, o + GRID),
                _get(bill, o + P2P)
            );
        }
    }

    // ------------------------------------------------------------------ settlement

    /// @dev The settlement with each participant's bill items: `bill[ITEMS * i + item]`, computed by
    ///      `StorageSettlement.settlement` (STATICCALL; a revert is re-raised as is) on the input built
    ///      by `_settlementInput`. Its output is the memory image of the four arrays.
    function _compute(uint256 roundId, int64[][] memory values)
        internal
        view
        returns (int256[] memory amounts, address[] memory payees, int256[] memory payeeAmounts, int256[] memory bill)
    {
        (uint256 input, uint256 size) = _settlementInput(roundId, values);
        _callSettlement(input, size);
        uint256 count = values.length;
        assembly ("memory-safe") {
            let out := mload(0x40)
            // abi.encode(bytes): offset, length, then the words
            let n := sub(returndatasize(), 64)
            returndatacopy(out, 64, n)
            mstore(0x40, add(out, n))
            amounts := out
            payees := add(out, mul(32, add(count, 1)))
            payeeAmounts := add(payees, 128)
            bill := add(payeeAmounts, 128)
        }
    }

    /// @dev The calldata of `StorageSettlement.settlement()` at memory address `data`, `size` bytes:
    ///      the selector, every participant's values (`len` words each, registration order), then
    ///      [memberIndex[count], participant[count], termsData, gridAccount, rentE, rentP, T, pairs,
    ///      len, count]. Reveal lengths were checked (settle, quote): every values[i] has `len`.
    ///      The values are packed in place (the arrays moved down onto each other, over the first
    ///      array's length word and whatever lies between them) when they are in ascending,
    ///      disjoint order and the last one ends at the free memory pointer, as `settle` and `quote`
    ///      allocate them (everything between them is dead by then), so that settling costs no
    ///      second copy of the reveals in memory; otherwise they are copied to fresh memory. Either
    ///      way `values` is unusable afterwards (neither caller reads it again).
    function _settlementInput(uint256 roundId, int64[][] memory values)
        internal
        view
        returns (uint256 data, uint256 size)
    {
        uint256 count = values.length;
        uint256 len = values[0].length;
        uint256 w = _packValues(values, len);
        data = w - 32 * count * len - 4;
        size = 4 + 32 * (count * len + 2 * count + IN_TAIL);
        assembly ("memory-safe") {
            let end := add(data, size)
            if gt(end, mload(0x40)) { mstore(0x40, end) }
        }
        uint256 selector = uint32(StorageSettlement.settlement.selector);
        assembly ("memory-safe") {
            mstore(sub(data, 28), selector)
        }
        _putParticipants(_memberIndexPlusOne[roundId], _rounds[roundId].participants, w, count);
        w += 64 * count;
        Round storage r = _rounds[roundId];
        address termsData = _termsData[roundId];
        address grid = r.gridAccount;
        uint256 T = uint256(r.periods) - HEAD;
        bool pairs = r.pairLanes != 0;
        uint64[] storage rents = r.tariff; // the two rents (length 2 since `start`), one slot
        assembly ("memory-safe") {
            mstore(0, rents.slot)
            let packed := sload(keccak256(0, 32))
            mstore(w, termsData)
            mstore(add(w, 32), grid)
            mstore(add(w, 64), and(packed, 0xffffffffffffffff))
            mstore(add(w, 96), and(shr(64, packed), 0xffffffffffffffff))
            mstore(add(w, 128), T)
            mstore(add(w, 160), pairs)
            mstore(add(w, 192), len)
            mstore(add(w, 224), count)
        }
    }

    /// @dev Moves the values into one run of words (in place if possible, see `_settlementInput`),
    ///      preceded by at least one word of allocated memory; returns the address after the run.
    function _packValues(int64[][] memory values, uint256 len) internal pure returns (uint256 end) {
        assembly ("memory-safe") {
            let count := mload(values)
            let bytesPer := mul(32, len)
            let first := mload(add(values, 32))
            let prev := first
            let inPlace := 1
            for { let i := 1 } lt(i, count) { i := add(i, 1) } {
                let v := mload(add(values, mul(32, add(i, 1))))
                if lt(v, add(prev, add(bytesPer, 32))) { inPlace := 0 }
                prev := v
            }
            if iszero(eq(add(prev, add(bytesPer, 32)), mload(0x40))) { inPlace := 0 }
            let dst := add(first, 32)
            if iszero(inPlace) {
                dst := add(mload(0x40), 32)
                mstore(0x40, add(dst, mul(bytesPer, count)))
            }
            for { let i := 0 } lt(i, count) { i := add(i, 1) } {
                let v := add(mload(add(values, mul(32, add(i, 1)))), 32)
                if iszero(eq(v, dst)) { mcopy(dst, v, bytesPer) }
                dst := add(dst, bytesPer)
            }
            end := dst
        }
    }

    /// @dev The member indices and the addresses of the participants at `w` (calculator input).
    function _putParticipants(
        mapping(address => uint256) storage index,
        address[] storage parts,
        uint256 w,
        uint256 count
    ) internal view {
        for (uint256 i = 0; i < count; ++i) {
            address a = parts[i];
            uint256 member = index[a] - 1;
            assembly ("memory-safe") {
                let at := add(w, mul(32, i))
                mstore(at, member)
                mstore(add(at, mul(32, count)), a)
            }
        }
    }

    /// @dev STATICCALLs the calculator with the `size` bytes at memory address `input`; re-raises
    ///      its revert data as is.
    function _callSettlement(uint256 input, uint256 size) internal view {
        address calc = address(SETTLEMENT);
        assembly ("memory-safe") {
            if iszero(staticcall(gas(), calc, input, size, 0, 0)) {
                let out := mload(0x40)
                returndatacopy(out, 0, returndatasize())
                revert(out, returndatasize())
            }
        }
    }

    /// @dev a[i] without a bounds check.
    function _get(int256[] memory a, uint256 i) internal pure returns (int256 x) {
        assembly ("memory-safe") {
            x := mload(add(a, mul(32, add(i, 1))))
        }
    }
}
