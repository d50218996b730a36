"""medvl.tasks."""
