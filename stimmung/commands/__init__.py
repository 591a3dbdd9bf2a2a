"""CLI command groups, one module each; `stimmung/cli.py` assembles them."""
