// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title PackedSlots
/// @notice Reads signed slot sums out of a packed Paillier plaintext.
/// @dev The plaintext is big-endian bytes of len(n). Slot t holds its value in bits
///      [t*W, t*W + B) counted from the least significant bit; the value is read modulo 2^B as a
///      two's-complement B-bit integer (the W - B headroom bits above are carries and are ignored).
library PackedSlots {
    /// @notice The layout does not fit the plaintext or B is not in [1, 64] or W < B.
    error SlotLayout(uint256 periods, uint256 slotBits, uint256 slotWidth, uint256 plaintextBytes);

    /// @notice Decodes `periods` signed B-bit slots of width W from the packed plaintext `m`.
    /// @return sums one int64 per slot.
    function decode(bytes memory m, uint256 periods, uint256 slotBits, uint256 slotWidth)
        internal
        pure
        returns (int64[] memory sums)
    {
        uint256 len = m.length;
        if (slotBits == 0 || slotBits > 64 || slotWidth < slotBits || periods * slotWidth + 8 > len * 8) {
            revert SlotLayout(periods, slotBits, slotWidth, len);
        }
        sums = new int64[](periods);
        assembly ("memory-safe") {
            let mask := sub(shl(slotBits, 1), 1)
            let signBit := sub(slotBits, 1)
            let out := add(sums, 32)
            let top := add(m, len) // mload(top) = last 32 bytes of m
            for { let t := 0 } lt(t, periods) { t := add(t, 1) } {
                let o := mul(t, slotWidth)
                // the word whose least significant byte is byte o/8 (from the end)
                let w := mload(sub(top, shr(3, o)))
                let v := and(shr(and(o, 7), w), mask)
                // two's complement: subtract 2^B when the sign bit is set
                v := sub(v, shl(slotBits, and(shr(signBit, v), 1)))
                mstore(add(out, mul(t, 32)), v)
            }
        }
    }
}
