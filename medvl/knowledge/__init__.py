"""medvl.knowledge."""
