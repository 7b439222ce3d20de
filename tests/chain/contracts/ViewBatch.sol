// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ViewBatch
/// @notice Test-only (tests/chain): many view calls in one eth_call, so that a test can take a
///         snapshot of everything a rejected transaction might have changed cheaply.
contract ViewBatch {
    /// @notice Calls `targets[i]` with `calls[i]` (static) for every i.
    /// @return results each call's success flag (one byte) followed by its return or revert data.
    function read(address[] calldata targets, bytes[] calldata calls) external view returns (bytes[] memory results) {
        results = new bytes[](calls.length);
        for (uint256 i = 0; i < calls.length; ++i) {
            (bool ok, bytes memory data) = targets[i].staticcall(calls[i]);
            results[i] = abi.encodePacked(ok, data);
        }
    }
}
