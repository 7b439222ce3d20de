// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BigMod} from "./lib/BigMod.sol";
import {PackedSlots} from "./lib/PackedSlots.sol";

/// @title PaillierMath
/// @notice The Paillier arithmetic of PrivateRounds: the modulus square, the homomorphic product
///         of a round's ciphertexts (in chunks), the decoding of a decryption and the chunked
///         check of an opening (a challenge). Stateless; PrivateRounds creates one in its
///         constructor and its modules call it. A round's key lives in a data contract whose code
///         is 0x00 || n^2 || n (`keyData`), read here with EXTCODECOPY.
contract PaillierMath {
    /// @notice How a round packs its plaintexts.
    struct Layout {
        uint16 slots;
        uint8 slotBits;
        uint16 slotWidth;
    }

    /// @notice Outcome of `open`.
    enum Opening {
        Valid,
        PlaintextOutOfRange,
        OpeningNotCanonical
    }

    /// @notice n^2 of a modulus (big-endian, a multiple of 32 bytes).
    /// @param n the modulus.
    /// @return nSq 2 len(n) bytes.
    function square(bytes calldata n) external view returns (bytes memory nSq) {
        return BigMod.square(n);
    }

    /// @notice The product modulo n^2 of `soFar` (empty: none) and ciphertexts (each len(n^2)
    ///         bytes, checked by the caller).
    /// @param keyData the round's key data contract.
    /// @param soFar the product of earlier chunks, or empty.
    /// @param ciphertexts the ciphertexts.
    /// @return agg the product, len(n^2) bytes.
    function product(address keyData, bytes calldata soFar, bytes[] calldata ciphertexts)
        external
        view
        returns (bytes memory agg)
    {
        uint256 L2 = ciphertexts[0].length;
        uint256 ctx = BigMod.context(_load(keyData, 1, L2));
        uint256 first = soFar.length == 0 ? 1 : 0;
        agg = first == 1 ? ciphertexts[0] : soFar;
        bytes memory tmp = new bytes(L2);
        for (uint256 i = first; i < ciphertexts.length; ++i) {
            bytes calldata c = ciphertexts[i];
            assembly ("memory-safe") {
                calldatacopy(add(tmp, 32), c.offset, L2)
            }
            BigMod.modmulInto(ctx, agg, tmp, agg);
        }
    }

    /// @notice Checks a published decryption (m < n, 0 < rho < n) and decodes its slot sums and
    ///         its check slot (the slot after them, whose masks cancel in an honest sum), each less
    ///         `mask` (mod 2^B; empty: none).
    /// @param keyData the round's key data contract.
    /// @param mRho the plaintext m and the opening rho, len(n) bytes each.
    /// @param layout the slot layout (`slots` data slots; the check slot follows them).
    /// @param mask per slot, the check slot last, a mask to remove (empty: none).
    /// @return outcome Valid, or what is wrong.
    /// @return sums the decoded slot sums (Valid only).
    /// @return check the check slot, mod 2^B (Valid only).
    function open(address keyData, bytes calldata mRho, Layout calldata layout, uint64[] calldata mask)
        external
        view
        returns (Opening outcome, int64[] memory sums, uint64 check)
    {
        uint256 L = mRho.length / 2;
        bytes memory m = mRho[:L];
        bytes memory rho = mRho[L:];
        bytes memory n = _load(keyData, 1 + 2 * L, L);
        if (!BigMod.lt(m, n)) return (Opening.PlaintextOutOfRange, sums, 0);
        if (BigMod.isZero(rho) || !BigMod.lt(rho, n)) return (Opening.OpeningNotCanonical, sums, 0);
        uint256 bits = layout.slotBits;
        int64[] memory all = PackedSlots.decode(m, uint256(layout.slots) + 1, bits, layout.slotWidth);
        uint256 modulus = (uint256(1) << bits) - 1;
        sums = new int64[](layout.slots);
        for (uint256 t = 0; t < all.length; ++t) {
            uint256 v;
            unchecked {
                v = (uint256(int256(all[t])) - (mask.length != 0 ? mask[t] : 0)) & modulus; // mod 2^256, then mod 2^B
            }
            if (t < sums.length) sums[t] = int64(_signExtend(v, bits));
            else check = uint64(v);
        }
    }

    /// @notice Runs `count` steps of the square-and-multiply of rho^n mod n^2 by 256-bit words of
    ///         n, from word `from` (0: the most significant): acc = acc^(2^256) * rho^(word) each.
    /// @param keyData the round's key data contract.
    /// @param acc the accumulator after `from` steps (ignored when `from` is 0).
    /// @param rho the opening.
    /// @param from the steps done so far.
    /// @param count the steps to run.
    /// @return next the accumulator after `from + count` steps, len(n^2) bytes.
    function challengeSteps(address keyData, bytes calldata acc, bytes calldata rho, uint256 from, uint256 count)
        external
        view
        returns (bytes memory next)
    {
        uint256 L = rho.length;
        bytes memory nSq = _load(keyData, 1, 2 * L);
        bytes memory n = _load(keyData, 1 + 2 * L, L);
        bytes memory base = rho;
        bytes memory shift = new bytes(33); // 2^256
        shift[0] = 0x01;
        next = acc;
        uint256 ctx = BigMod.context(nSq);
        for (uint256 j = from; j < from + count; ++j) {
            bytes memory word = new bytes(32);
            assembly ("memory-safe") {
                mstore(add(word, 32), mload(add(add(n, 32), mul(j, 32))))
            }
            bytes memory power = BigMod.modexp(base, word, nSq);
            if (j == 0) {
                next = power;
            } else {
                next = BigMod.modexp(next, shift, nSq);
                BigMod.modmulInto(ctx, next, power, next);
            }
        }
    }

    /// @notice Whether agg == (1 + m n) * rhoN mod n^2, with rhoN = rho^n mod n^2 from `challengeSteps`.
    /// @param keyData the round's key data contract.
    /// @param agg the aggregate.
    /// @param m the plaintext.
    /// @param rhoN rho^n mod n^2.
    /// @return holds true when the opening is right.
    function openingHolds(address keyData, bytes calldata agg, bytes calldata m, bytes calldata rhoN)
        external
        view
        returns (bool holds)
    {
        uint256 L = m.length;
        return BigMod.openingHolds(agg, m, rhoN, _load(keyData, 1 + 2 * L, L), _load(keyData, 1, 2 * L));
    }

    /// @dev The B-bit two's-complement value of v (< 2^B).
    function _signExtend(uint256 v, uint256 bits) internal pure returns (int256) {
        uint256 up = 256 - bits;
        return int256(v << up) >> up;
    }

    function _load(address at, uint256 offset, uint256 len) internal view returns (bytes memory data) {
        data = new bytes(len);
        assembly ("memory-safe") {
            extcodecopy(at, add(data, 32), offset, len)
        }
    }
}
