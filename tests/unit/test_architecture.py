"""The import contracts in pyproject.toml ([tool.importlinter]): no cycles between our packages and
modules; models know no pipeline, connectors, Kafka or Elasticsearch; schemas import nothing of
ours; connectors do not import the pipeline. Checked on this source tree with import-linter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    # A subprocess with this tree first on the path: the contracts are checked on the code under
    # test, not on whatever tree the environment's editable install points at.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
                           "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 5 kept, 0 broken." in done.stdout, done.stdout
