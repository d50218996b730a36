"""medvl.radiology."""
