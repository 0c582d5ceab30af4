"""One Click command per module; each imports its implementation lazily so `--help` stays light."""
