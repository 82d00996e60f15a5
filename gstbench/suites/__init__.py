"""Built-in suite files (TOML), shipped as package data and registered by gstbench.builtin.suites."""
