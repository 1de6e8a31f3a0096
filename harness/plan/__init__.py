"""Stage 1, plan: suites (TOML) expanded into cases, and the memory estimate that refuses what cannot fit."""
