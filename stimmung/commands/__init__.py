"""CLI command groups, one module each; `stimmung/cli.py` assembles them.

Command bodies import what they need inside the function (the rule for this package only): the
whole CLI is loaded for every command, and `stimmung config` must not pay for torch or Faust.
"""
