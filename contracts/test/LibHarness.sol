// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BigMod} from "../lib/BigMod.sol";
import {PackedSlots} from "../lib/PackedSlots.sol";
import {Secp256k1} from "../lib/Secp256k1.sol";

/// @title LibHarness
/// @notice Test-only entry points to the BigMod, PackedSlots and Secp256k1 libraries (not deployed in production).
contract LibHarness {
    /// @notice Secp256k1.hashToPoint.
    /// @param tag the tag. @return point the compressed point.
    function hashToPoint(bytes memory tag) external view returns (bytes memory point) {
        return Secp256k1.hashToPoint(tag);
    }

    /// @notice Secp256k1.isPoint.
    /// @param point a compressed point. @return ok whether the contract takes it.
    function isPoint(bytes calldata point) external view returns (bool ok) {
        return Secp256k1.isPoint(point);
    }

    /// @notice Secp256k1.verifyDleq and its gas.
    /// @param S sigma G. @param B the base. @param Q sigma B. @param proof the expanded proof.
    /// @return ok whether it holds. @return used gas.
    function verifyDleq(bytes memory S, bytes memory B, bytes memory Q, bytes calldata proof)
        external
        view
        returns (bool ok, uint256 used)
    {
        uint256 before = gasleft();
        ok = Secp256k1.verifyDleq(S, B, Q, proof);
        used = before - gasleft();
    }

    /// @notice a * b mod N.
    /// @param a first factor (< N). @param b second factor (< N). @param N odd modulus.
    /// @return r the product.
    function modmul(bytes memory a, bytes memory b, bytes memory N) external view returns (bytes memory r) {
        return BigMod.modmul(a, b, N);
    }

    /// @notice Gas used by one modmul (context allocation included).
    /// @param a first factor. @param b second factor. @param N odd modulus.
    /// @return used gas.
    function modmulGas(bytes memory a, bytes memory b, bytes memory N) external view returns (uint256 used) {
        uint256 before = gasleft();
        BigMod.modmul(a, b, N);
        used = before - gasleft();
    }

    /// @notice n^2.
    /// @param n the operand.
    /// @return sq the square, 2*len(n) bytes.
    function square(bytes memory n) external view returns (bytes memory sq) {
        return BigMod.square(n);
    }

    /// @notice base^e mod m.
    /// @param base the base. @param e the exponent. @param m the modulus.
    /// @return r the power.
    function modexp(bytes memory base, bytes memory e, bytes memory m) external view returns (bytes memory r) {
        return BigMod.modexp(base, e, m);
    }

    /// @notice a < b.
    /// @param a left. @param b right.
    /// @return r the comparison.
    function lt(bytes memory a, bytes memory b) external pure returns (bool r) {
        return BigMod.lt(a, b);
    }

    /// @notice a == 0.
    /// @param a the operand.
    /// @return r whether zero.
    function isZero(bytes memory a) external pure returns (bool r) {
        return BigMod.isZero(a);
    }

    /// @notice Paillier opening check.
    /// @param c ciphertext. @param m plaintext. @param rho randomness. @param n modulus. @param nSq n^2.
    /// @return ok whether c == (1 + m*n) * rho^n mod n^2.
    function verifyOpening(bytes memory c, bytes memory m, bytes memory rho, bytes memory n, bytes memory nSq)
        external
        view
        returns (bool ok)
    {
        if (BigMod.isZero(rho)) return false;
        return BigMod.openingHolds(c, m, BigMod.modexp(rho, n, nSq), n, nSq);
    }

    /// @notice Slot decoding.
    /// @param m packed plaintext. @param periods T. @param slotBits B. @param slotWidth W.
    /// @return sums decoded signed slots.
    function decode(bytes memory m, uint256 periods, uint256 slotBits, uint256 slotWidth)
        external
        pure
        returns (int64[] memory sums)
    {
        return PackedSlots.decode(m, periods, slotBits, slotWidth);
    }
}
