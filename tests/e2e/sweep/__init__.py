"""The crash-point sweep's parts: a driver per scenario, the invariants, and the tally it prints."""
