"""Planning: a suite's TOML expanded into validated cell specs, their seeds, schedules and labels (no torch)."""
