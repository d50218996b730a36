"""medvl.pathology."""
