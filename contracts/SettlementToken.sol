// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title SettlementToken
/// @notice The 18-decimal ERC-20 in which gridshare payments are made; the owner mints.
contract SettlementToken is ERC20, Ownable {
    /// @param initialOwner the account allowed to mint.
    constructor(address initialOwner) ERC20("GridShare Settlement Token", "GST") Ownable(initialOwner) {}

    /// @notice Mints new tokens (owner only).
    /// @param to the receiver.
    /// @param amount token base units.
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
