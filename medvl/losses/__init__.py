"""medvl.losses."""
