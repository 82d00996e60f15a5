"""Running a suite: which cells are missing, who trains each (leases), the executor, progress and the cost estimate."""
