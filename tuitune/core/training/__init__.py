"""Training: config (YAML), presets, data, the detached worker, job control, merge and post-train checks."""
