// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title BigMod
/// @notice Modular arithmetic on big unsigned integers held as big-endian `bytes` whose length is a
///         multiple of 32 (one 256-bit limb per word, most significant limb first).
/// @dev Multiplication uses a*b = ((a+b)^2 - (a-b)^2) / 4 with both squares computed by the MODEXP
///      precompile (0x05) with exponent 2 and the modulus itself, so no precompile input is ever
///      longer than the modulus (EIP-7823 safe). The division by 4 is two "halve modulo an odd N"
///      steps. Everything else is limb loops in inline assembly.
library BigMod {
    /// @notice Operand lengths differ or are not a non-zero multiple of 32 bytes.
    error BigModLength(uint256 a, uint256 b);
    /// @notice The MODEXP precompile call failed.
    error BigModPrecompileFailed();
    /// @notice A modular multiplication context needs an odd modulus.
    error BigModEvenModulus();

    /// @notice True when `a` is zero.
    function isZero(bytes memory a) internal pure returns (bool z) {
        assembly ("memory-safe") {
            let acc := 0
            let p := add(a, 32)
            let end := add(p, mload(a))
            for {} lt(p, end) { p := add(p, 32) } { acc := or(acc, mload(p)) }
            z := iszero(acc)
        }
    }

    /// @notice True when `a < b` (both of the same length).
    function lt(bytes memory a, bytes memory b) internal pure returns (bool r) {
        uint256 len = a.length;
        if (len != b.length || len % 32 != 0) revert BigModLength(len, b.length);
        assembly ("memory-safe") {
            let pa := add(a, 32)
            let pb := add(b, 32)
            for { let i := 0 } lt(i, len) { i := add(i, 32) } {
                let x := mload(add(pa, i))
                let y := mload(add(pb, i))
                if iszero(eq(x, y)) {
                    r := lt(x, y)
                    break
                }
            }
        }
    }

    /// @notice Allocates a multiplication context for the odd modulus `N`: reusable scratch memory
    ///         holding two MODEXP inputs ([L][1][L] base 0x02 N) and the two square outputs.
    /// @return ctx memory pointer of the context.
    function context(bytes memory N) internal pure returns (uint256 ctx) {
        uint256 len = N.length;
        if (len == 0 || len % 32 != 0) revert BigModLength(len, len);
        if (uint8(N[len - 1]) & 1 == 0) revert BigModEvenModulus();
        assembly ("memory-safe") {
            ctx := mload(0x40)
            let inLen := add(97, mul(2, len))
            for { let k := 0 } lt(k, 2) { k := add(k, 1) } {
                let buf := add(ctx, mul(k, inLen))
                mstore(buf, len)
                mstore(add(buf, 32), 1)
                mstore(add(buf, 64), len)
                mcopy(add(add(buf, 97), len), add(N, 32), len)
                mstore8(add(add(buf, 96), len), 2)
            }
            let size := add(mul(2, inLen), mul(2, len))
            mstore(0x40, add(ctx, and(add(size, 31), not(31))))
        }
    }

    /// @notice out = a * b mod N for the modulus of `ctx`; a, b < N, all of length len(N).
    ///         `out` may alias `a` or `b`.
    function modmulInto(uint256 ctx, bytes memory a, bytes memory b, bytes memory out) internal view {
        assembly ("memory-safe") {
            // dst = x + y over L bytes; returns the carry out
            function addTo(dst, x, y, L) -> carry {
                for { let i := L } gt(i, 0) {} {
                    i := sub(i, 32)
                    let v := mload(add(x, i))
                    let t := add(v, carry)
                    let c1 := lt(t, v)
                    let s := add(t, mload(add(y, i)))
                    carry := or(c1, lt(s, t))
                    mstore(add(dst, i), s)
                }
            }
            // dst = x - y over L bytes; returns the borrow out
            function subTo(dst, x, y, L) -> borrow {
                for { let i := L } gt(i, 0) {} {
                    i := sub(i, 32)
                    let v := mload(add(x, i))
                    let t := sub(v, mload(add(y, i)))
                    let b1 := gt(t, v)
                    let d := sub(t, borrow)
                    borrow := or(b1, gt(d, t))
                    mstore(add(dst, i), d)
                }
            }
            // x < y, scanning from the most significant limb (usually decided by the first)
            function less(x, y, L) -> r {
                for { let i := 0 } lt(i, L) { i := add(i, 32) } {
                    let u := mload(add(x, i))
                    let v := mload(add(y, i))
                    if iszero(eq(u, v)) {
                        r := lt(u, v)
                        break
                    }
                }
            }
            function square(buf, dst, L) {
                if iszero(staticcall(gas(), 0x05, buf, add(97, mul(2, L)), dst, L)) {
                    mstore(0, 0x049c2a04) // BigModPrecompileFailed()
                    revert(28, 4)
                }
            }

            let L := mload(ctx)
            if iszero(and(eq(mload(a), L), and(eq(mload(b), L), eq(mload(out), L)))) {
                mstore(0, 0xe59c3a38) // BigModLength(uint256,uint256)
                mstore(32, mload(a))
                mstore(64, L)
                revert(28, 68)
            }
            let buf2 := add(ctx, add(97, mul(2, L)))
            let base1 := add(ctx, 96)
            let base2 := add(buf2, 96)
            let pn := add(base1, add(L, 1))
            let s2 := add(buf2, add(97, mul(2, L)))
            let d2 := add(s2, L)

            // one pass: s = a + b -> base1, d = a - b -> base2
            {
                let pa := add(a, 32)
                let pb := add(b, 32)
                let carry := 0
                let borrow := 0
                for { let i := L } gt(i, 0) {} {
                    i := sub(i, 32)
                    let x := mload(add(pa, i))
                    let y := mload(add(pb, i))
                    let t := add(x, carry)
                    let s := add(t, y)
                    carry := or(lt(t, x), lt(s, t))
                    mstore(add(base1, i), s)
                    let u := sub(x, y)
                    let d := sub(u, borrow)
                    borrow := or(gt(u, x), gt(d, u))
                    mstore(add(base2, i), d)
                }
                if or(carry, iszero(less(base1, pn, L))) { pop(subTo(base1, base1, pn, L)) }
                if borrow { pop(addTo(base2, base2, pn, L)) }
            }
            square(ctx, s2, L)
            square(buf2, d2, L)

            // one pass: out = (s2 - d2 + m*N) / 4 with m = f + k, f = [s2 < d2] makes the
            // difference non-negative and k in [0, 3] makes it divisible by 4 (N^-1 = N mod 4)
            {
                let last := sub(L, 32)
                let f := less(s2, d2, L)
                let nlow := mload(add(pn, last))
                let r0 := and(add(sub(mload(add(s2, last)), mload(add(d2, last))), mul(f, nlow)), 3)
                let m := add(f, and(mul(sub(4, r0), and(nlow, 3)), 3))
                let po := add(out, 32)
                let c := 0 // signed carry
                let prev := 0
                for { let i := L } gt(i, 0) {} {
                    i := sub(i, 32)
                    let ni := mload(add(pn, i))
                    let lo := mul(m, ni)
                    let hi := shr(128, add(mul(m, shr(128, ni)), shr(128, mul(m, and(ni, 0xffffffffffffffffffffffffffffffff)))))
                    let x := mload(add(s2, i))
                    let t1 := add(x, lo)
                    let y := mload(add(d2, i))
                    let t2 := sub(t1, y)
                    let v := add(t2, c)
                    let adj := lt(v, t2)
                    if slt(c, 0) { adj := sub(0, gt(v, t2)) }
                    c := sub(add(add(hi, lt(t1, x)), adj), lt(t1, y))
                    if lt(i, last) { mstore(add(po, add(i, 32)), or(shr(2, prev), shl(254, v))) }
                    prev := v
                }
                mstore(po, or(shr(2, prev), shl(254, c)))
            }
        }
    }

    /// @notice a * b mod N (a, b < N, all three of the same length, N odd).
    /// @return r the product, len(N) bytes.
    function modmul(bytes memory a, bytes memory b, bytes memory N) internal view returns (bytes memory r) {
        uint256 ctx = context(N);
        r = new bytes(N.length);
        modmulInto(ctx, a, b, r);
    }

    /// @notice base^e mod m through the MODEXP precompile.
    /// @return r the result, len(m) bytes.
    function modexp(bytes memory base, bytes memory e, bytes memory m) internal view returns (bytes memory r) {
        uint256 lb = base.length;
        uint256 le = e.length;
        uint256 lm = m.length;
        r = new bytes(lm);
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, lb)
            mstore(add(p, 32), le)
            mstore(add(p, 64), lm)
            mcopy(add(p, 96), add(base, 32), lb)
            mcopy(add(add(p, 96), lb), add(e, 32), le)
            mcopy(add(add(add(p, 96), lb), le), add(m, 32), lm)
            if iszero(staticcall(gas(), 0x05, p, add(add(add(96, lb), le), lm), add(r, 32), lm)) {
                mstore(0, 0x049c2a04)
                revert(28, 4)
            }
        }
    }

    /// @notice n^2 exactly (2*len(n) bytes), as one MODEXP with exponent 2 and the all-ones modulus
    ///         2^(16*len(n)) - 1, which exceeds n^2.
    /// @return sq the square.
    function square(bytes memory n) internal view returns (bytes memory sq) {
        uint256 L = n.length;
        if (L == 0 || L % 32 != 0) revert BigModLength(L, L);
        uint256 L2 = 2 * L;
        sq = new bytes(L2);
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, L)
            mstore(add(p, 32), 1)
            mstore(add(p, 64), L2)
            mcopy(add(p, 96), add(n, 32), L)
            mstore8(add(add(p, 96), L), 2)
            let pm := add(add(p, 97), L)
            for { let i := 0 } lt(i, L2) { i := add(i, 32) } { mstore(add(pm, i), not(0)) }
            if iszero(staticcall(gas(), 0x05, p, add(97, mul(3, L)), add(sq, 32), L2)) {
                mstore(0, 0x049c2a04)
                revert(28, 4)
            }
        }
    }

    /// @notice Zero-extends `a` on the left to `len` bytes.
    function widen(bytes memory a, uint256 len) internal pure returns (bytes memory r) {
        uint256 la = a.length;
        if (la > len) revert BigModLength(la, len);
        r = new bytes(len);
        assembly ("memory-safe") {
            mcopy(add(add(r, 32), sub(len, la)), add(a, 32), la)
        }
    }

    /// @notice True when the Paillier ciphertext c (len(nSq) bytes) encrypts m with an opening whose
    ///         n-th power is rn: c == (1 + m*n) * rn mod n^2. Requires m < n (checked by the caller).
    function openingHolds(bytes memory c, bytes memory m, bytes memory rn, bytes memory n, bytes memory nSq)
        internal
        view
        returns (bool)
    {
        uint256 L2 = nSq.length;
        if (c.length != L2 || rn.length != L2) return false;
        uint256 ctx = context(nSq);
        bytes memory g = widen(m, L2);
        modmulInto(ctx, g, widen(n, L2), g);
        // g = m*n + 1 (< n^2 since m < n)
        assembly ("memory-safe") {
            let p := add(add(g, 32), L2)
            for {} 1 {} {
                p := sub(p, 32)
                let w := add(mload(p), 1)
                mstore(p, w)
                if w { break }
            }
        }
        modmulInto(ctx, g, rn, g);
        return keccak256(g) == keccak256(c);
    }
}
