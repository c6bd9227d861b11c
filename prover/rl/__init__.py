"""GRPO with the unlikeliness reward on TRL: config, reward, shaping, trainer, diagnostics."""
