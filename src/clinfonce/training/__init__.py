"""Stage 2 training on Lightning: configuration, the module, the run directory."""
