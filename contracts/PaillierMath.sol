// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BigMod} from "./lib/BigMod.sol";
import {PackedSlots} from "./lib/PackedSlots.sol";

/// @title PaillierMath
/// @notice The Paillier arithmetic of PrivateRounds: the modulus square, the homomorphic product
///         of a round's ciphertexts and the check and decoding of a decryption. Stateless;
///         PrivateRounds creates one in its constructor (which keeps its own code under the
///         EIP-170 limit) and calls it. A round's key lives in a data contract whose code is
///         0x00 || n^2 || n (`keyData`), read here with EXTCODECOPY.
contract PaillierMath {
    /// @notice How a round packs its plaintexts, and whether openings are checked.
    struct Layout {
        bool verify;
        uint16 slots;
        uint8 slotBits;
        uint16 slotWidth;
    }

    /// @notice Outcome of `open`.
    enum Opening {
        Valid,
        PlaintextOutOfRange,
        InvalidOpening
    }

    /// @notice n^2 of a modulus (big-endian, a multiple of 32 bytes).
    /// @param n the modulus.
    /// @return nSq 2 len(n) bytes.
    function square(bytes calldata n) external view returns (bytes memory nSq) {
        return BigMod.square(n);
    }

    /// @notice The product of ciphertexts modulo n^2 (each len(n^2) bytes, checked by the caller).
    /// @param keyData the round's key data contract.
    /// @param ciphertexts the ciphertexts.
    /// @return agg the product, len(n^2) bytes.
    function product(address keyData, bytes[] calldata ciphertexts) external view returns (bytes memory agg) {
        uint256 L2 = ciphertexts[0].length;
        uint256 ctx = BigMod.context(_load(keyData, 1, L2));
        agg = ciphertexts[0];
        bytes memory tmp = new bytes(L2);
        for (uint256 i = 1; i < ciphertexts.length; ++i) {
            bytes calldata c = ciphertexts[i];
            assembly ("memory-safe") {
                calldatacopy(add(tmp, 32), c.offset, L2)
            }
            BigMod.modmulInto(ctx, agg, tmp, agg);
        }
    }

    /// @notice Checks a decryption m of `agg` (m < n and, if asked, the opening rho:
    ///         agg == (1 + m n) rho^n mod n^2) and decodes its slot sums.
    /// @param keyData the round's key data contract (n is len(m) bytes).
    /// @param agg the aggregate ciphertext.
    /// @param m the plaintext.
    /// @param rho the opening.
    /// @param layout the slot layout and whether to check the opening.
    /// @return outcome Valid, or what is wrong.
    /// @return sums the decoded slot sums (Valid only).
    function open(
        address keyData,
        bytes memory agg,
        bytes memory m,
        bytes memory rho,
        Layout calldata layout
    ) external view returns (Opening outcome, int64[] memory sums) {
        outcome = _check(keyData, agg, m, rho, layout.verify);
        if (outcome == Opening.Valid) sums = PackedSlots.decode(m, layout.slots, layout.slotBits, layout.slotWidth);
    }

    function _check(address keyData, bytes memory agg, bytes memory m, bytes memory rho, bool verify)
        internal
        view
        returns (Opening)
    {
        uint256 L = m.length;
        bytes memory n = _load(keyData, 1 + 2 * L, L);
        if (!BigMod.lt(m, n)) return Opening.PlaintextOutOfRange;
        if (verify && !BigMod.verifyOpening(agg, m, rho, n, _load(keyData, 1, 2 * L))) return Opening.InvalidOpening;
        return Opening.Valid;
    }

    function _load(address at, uint256 offset, uint256 len) internal view returns (bytes memory data) {
        data = new bytes(len);
        assembly ("memory-safe") {
            extcodecopy(at, add(data, 32), offset, len)
        }
    }
}
