"""Durable connector cursors: one small JSON file per checkpoint key, replaced atomically."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


class CheckpointStore:
    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
        return self.directory / f"{digest}.json"

    def load(self, key: str) -> Any | None:
        path = self._path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        if data.get("key") != key:  # hash collision or a hand-edited file: do not resume wrongly
            return None
        return data.get("cursor")

    def save(self, key: str, cursor: Any) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"key": key, "cursor": cursor}, ensure_ascii=False)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".ckpt-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def clear(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
