// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Secp256k1
/// @notice What the blame step checks of the mask points (offchain/privacy/secagg.py): points hashed
///         to the curve, and Chaum-Pedersen proofs of equal discrete logarithms, with no curve
///         precompile but ecrecover. Points travel compressed (33 bytes: 0x02 or 0x03, x).
/// @dev ecrecover(h, v, r, s) returns the address of r^-1 (s R - h G) for the point R with x = r and
///      y parity v - 27; with s = b r and h = -a r that is a G + b R, so ecrecover gives the
///      address (keccak256(x || y), low 160 bits) of any combination of G and one other point. A
///      proof carries the two helper points U = s B and V = c P, each checked against such an
///      address, and the sum U + V is computed here (one inversion through MODEXP).
library Secp256k1 {
    uint256 internal constant P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F;
    uint256 internal constant N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    uint256 internal constant PROOF_BYTES = 192; // c, s, U (x, y), V (x, y)
    bytes internal constant DLEQ_TAG = "gridshare/secagg/dleq/";
    bytes internal constant POINT_TAG = "gridshare/secagg/point/";

    /// @notice The point nobody knows the logarithm of that secagg.hash_to_point gives for `tag`
    ///         (try-and-increment on x, even y), compressed.
    function hashToPoint(bytes memory tag) internal view returns (bytes memory point) {
        for (uint32 counter = 0;; ++counter) {
            uint256 x = uint256(sha256(abi.encodePacked(POINT_TAG, tag, counter)));
            if (_isX(x)) return abi.encodePacked(bytes1(0x02), x);
        }
    }

    /// @notice A compressed point as the proof check uses it: prefix 2 or 3 and an x of the curve
    ///         below the group order N (ecrecover takes no r >= N; a point with N <= x < p, one in
    ///         2^128, could never be proven and is refused where it enters).
    function isPoint(bytes calldata point) internal view returns (bool) {
        return point.length == 33 && (point[0] == 0x02 || point[0] == 0x03) && _isX(uint256(bytes32(point[1:])));
    }

    /// @dev x < N and x^3 + 7 a square mod p (Euler's criterion: one small MODEXP).
    function _isX(uint256 x) private view returns (bool) {
        return x < N && _modexp(addmod(mulmod(mulmod(x, x, P), x, P), 7, P), (P - 1) / 2) == 1;
    }

    /// @notice Whether `proof` shows that the compressed points `S` = sigma G and `Q` = sigma `B`
    ///         have the same logarithm sigma (the challenge is keccak256 of the tag, S, B, Q and the
    ///         addresses of the two commitments; secagg.verify).
    function verifyDleq(bytes memory S, bytes memory B, bytes memory Q, bytes calldata proof) internal view returns (bool) {
        if (proof.length != PROOF_BYTES || !_compressed(S) || !_compressed(B) || !_compressed(Q)) return false;
        uint256 c = uint256(bytes32(proof[0:32]));
        uint256 s = uint256(bytes32(proof[32:64]));
        if (c == 0 || c >= N || s == 0 || s >= N) return false;
        address t1 = _combination(S, s, c); // s G + c S
        address t2 = _sumAddress(B, Q, s, c, proof[64:]); // s B + c Q, from the helpers
        if (t1 == address(0) || t2 == address(0)) return false;
        return c == uint256(keccak256(abi.encodePacked(DLEQ_TAG, S, B, Q, t1, t2))) % N;
    }

    /// @dev The address of U + V for the helpers U = s B and V = c Q (zero if they are not).
    function _sumAddress(bytes memory B, bytes memory Q, uint256 s, uint256 c, bytes calldata helpers)
        private
        view
        returns (address)
    {
        (uint256 ux, uint256 uy, uint256 vx, uint256 vy) = abi.decode(helpers, (uint256, uint256, uint256, uint256));
        if (_address(ux, uy) != _combination(B, 0, s) || _address(vx, vy) != _combination(Q, 0, c)) return address(0);
        if (ux == vx) return address(0); // U = +-V: not the sum of an honest proof
        (uint256 tx, uint256 ty) = _add(ux, uy, vx, vy);
        return _address(tx, ty);
    }

    /// @dev The address of a G + b R (zero if ecrecover cannot form it).
    function _combination(bytes memory R, uint256 a, uint256 b) private pure returns (address) {
        uint256 r;
        assembly ("memory-safe") {
            r := mload(add(R, 33))
        }
        if (r == 0 || r >= N) return address(0);
        uint256 s = mulmod(b, r, N);
        if (s == 0) return address(0);
        uint256 h = (N - mulmod(a, r, N)) % N;
        return ecrecover(bytes32(h), uint8(R[0]) == 2 ? 27 : 28, bytes32(r), bytes32(s));
    }

    function _compressed(bytes memory point) private pure returns (bool) {
        return point.length == 33 && (point[0] == 0x02 || point[0] == 0x03);
    }

    function _address(uint256 x, uint256 y) private pure returns (address) {
        return address(uint160(uint256(keccak256(abi.encodePacked(x, y)))));
    }

    /// @dev Affine sum of two points with different x.
    function _add(uint256 x1, uint256 y1, uint256 x2, uint256 y2) private view returns (uint256 x3, uint256 y3) {
        uint256 l = mulmod(addmod(y2, P - y1, P), _modexp(addmod(x2, P - x1, P), P - 2), P);
        x3 = addmod(mulmod(l, l, P), P - addmod(x1, x2, P), P);
        y3 = addmod(mulmod(l, addmod(x1, P - x3, P), P), P - y1, P);
    }

    /// @dev base^e mod P (MODEXP precompile).
    function _modexp(uint256 base, uint256 e) private view returns (uint256 r) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, 32)
            mstore(add(p, 32), 32)
            mstore(add(p, 64), 32)
            mstore(add(p, 96), base)
            mstore(add(p, 128), e)
            mstore(add(p, 160), P)
            if iszero(staticcall(gas(), 0x05, p, 192, p, 32)) { revert(0, 0) }
            r := mload(p)
        }
    }
}
