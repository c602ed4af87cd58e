"""Packaged YAML config presets (read with handcast.train.config)."""
