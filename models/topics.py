"""Topic labels by similarity to label prototypes in e5's multilingual embedding space.

A taxonomy file (YAML) that operators edit lists labels, each with a description and a few
example posts in any language. A label's prototype is the normalised mean of the embeddings of
its description and examples (encoded with e5's ``query: `` prefix, like the posts). A post gets
every label whose cosine similarity to the prototype reaches the label's threshold; its score
maps the similarity to [0, 1] around that threshold (0.5 = exactly at the threshold).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

DEFAULT_THRESHOLD = 0.88
SCORE_TEMPERATURE = 0.02


class TaxonomyError(ValueError):
    pass


@dataclass(frozen=True)
class TopicLabel:
    name: str
    description: str
    examples: tuple[str, ...]
    threshold: float


@dataclass(frozen=True)
class Taxonomy:
    labels: tuple[TopicLabel, ...]
    digest: str

    @property
    def names(self) -> list[str]:
        return [label.name for label in self.labels]


def default_taxonomy_path() -> Path:
    return Path(str(resources.files("stimmung.models").joinpath("taxonomy.yaml")))


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    path = Path(path) if path else default_taxonomy_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise TaxonomyError(f"cannot read taxonomy {path}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("labels"), dict) or not data["labels"]:
        raise TaxonomyError(f"{path}: expected a mapping 'labels: {{name: {{description, examples}}}}'")
    default = float(data.get("threshold", DEFAULT_THRESHOLD))
    labels = []
    for name, spec in data["labels"].items():
        if not isinstance(spec, dict) or not str(spec.get("description", "")).strip():
            raise TaxonomyError(f"{path}: label {name!r} needs a description")
        examples = spec.get("examples") or []
        if not isinstance(examples, list) or not all(isinstance(e, str) and e.strip() for e in examples):
            raise TaxonomyError(f"{path}: label {name!r}: examples must be a list of non-empty strings")
        threshold = float(spec.get("threshold", default))
        if not 0 < threshold < 1:
            raise TaxonomyError(f"{path}: label {name!r}: threshold must be between 0 and 1")
        labels.append(TopicLabel(str(name), spec["description"].strip(), tuple(e.strip() for e in examples), threshold))
    digest = hashlib.sha256(json.dumps([l.__dict__ for l in labels], sort_keys=True, default=list).encode()).hexdigest()[:12]
    return Taxonomy(tuple(labels), digest)


class TopicClassifier:
    def __init__(self, taxonomy: Taxonomy, prototypes: np.ndarray):
        self.taxonomy = taxonomy
        self.prototypes = prototypes  # [labels, H], L2-normalised
        self.thresholds = np.array([l.threshold for l in taxonomy.labels], dtype=np.float32)

    @classmethod
    def build(cls, taxonomy: Taxonomy, embed) -> "TopicClassifier":
        """``embed(texts) -> [N, H]`` normalised embeddings (the same encoder the posts use)."""
        protos = []
        for label in taxonomy.labels:
            vectors = embed([label.description, *label.examples])
            mean = vectors.mean(axis=0)
            protos.append(mean / np.linalg.norm(mean))
        return cls(taxonomy, np.stack(protos).astype(np.float32))

    def similarities(self, embeddings: np.ndarray) -> np.ndarray:
        return embeddings @ self.prototypes.T

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """[N, labels] in [0, 1]; >= 0.5 means the label applies."""
        z = (self.similarities(embeddings) - self.thresholds) / SCORE_TEMPERATURE
        return 1.0 / (1.0 + np.exp(-z))

    def labels_for(self, embeddings: np.ndarray) -> list[list[tuple[str, float]]]:
        out = []
        for row in self.scores(embeddings):
            picked = [(self.taxonomy.labels[i].name, round(float(s), 4)) for i, s in enumerate(row) if s >= 0.5]
            out.append(sorted(picked, key=lambda p: -p[1]))
        return out
