"""`stimmung models`: build the base encoder, print the model card's figures for any data."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from stimmung.commands.common import Context, fail

# a custom head's name becomes a file name in the heads directory: no separators, no "..", no dot files
HEAD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@click.group()
def models() -> None:
    """Offline models: build the base encoder, evaluate sentiment, topics and heads, train custom labels."""


@models.command("build-base")
def models_build_base() -> None:
    """Build (or verify) the base encoder from the pinned packages; print its directory."""
    from stimmung.models.e5_base import build_base_encoder

    click.echo(build_base_encoder())


@models.group("evaluate")
def models_evaluate() -> None:
    """Print the model card's figures for any data in the same layouts."""


def _annotator(obj: Context, sentiment: bool, topics: bool, heads: bool | None = None, shared_pass: bool = False):
    from stimmung.models import builtin_annotator

    try:
        return builtin_annotator(obj.settings.models, sentiment=sentiment, topics=topics, heads=heads,
                                 shared_pass=shared_pass)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))


def _sentiment_predictor(annotator):
    import numpy as np
    from tqdm import tqdm

    def predict(texts):
        out = []
        step = 512
        for start in tqdm(range(0, len(texts), step), desc="encoding", unit=" chunks", file=sys.stderr):
            out.append(annotator.encode(texts[start:start + step], want_sentiment=True)[0])
        return np.concatenate(out)

    return predict


def _topic_predictor(annotator):
    def predict(texts):
        return [{label for label, _ in row} for row in annotator.topics.labels_for(annotator.embed(texts))]

    return predict


@models_evaluate.command("sentiment")
@click.option("--umsab", "umsab", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="DIR with <language>/<split>_text.txt and <split>_labels.txt (0/1/2).")
@click.option("--tweeteval", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="DIR with <split>_text.txt and <split>_labels.txt.")
@click.option("--split", default="val", show_default=True)
@click.option("--exclude", "exclude", type=click.Path(dir_okay=False, exists=True, path_type=Path), multiple=True,
              help="a text file, one post per line (e.g. the model's training texts); posts found there are not "
                   "scored. Repeatable.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models_evaluate_sentiment(obj: Context, umsab: Path | None, tweeteval: Path | None, split: str,
                              exclude: tuple[Path, ...], as_json: bool) -> None:
    """Macro-F1 per language (UMSAB layout) or macro-recall (TweetEval layout).

    Public sets overlap: TweetEval's sentiment val holds 1,430 of UMSAB English train's 1,839 tweets
    and all 324 of its val, so the builtin model (trained on UMSAB train) has seen most of it. Pass
    the training texts with --exclude to score only posts the model never saw."""
    from stimmung.models.datasets import DatasetError, Split, read_tweeteval, read_umsab
    from stimmung.models.evaluate import evaluate_sentiment

    if (umsab is None) == (tweeteval is None):
        fail("give exactly one of --umsab DIR or --tweeteval DIR")
    try:
        data = read_umsab(umsab, split) if umsab is not None else read_tweeteval(tweeteval, split)  # type: ignore[arg-type]
    except DatasetError as err:
        fail(str(err))
    seen = {line.strip() for path in exclude for line in path.read_text(encoding="utf-8").splitlines()}
    keep = [i for i, text in enumerate(data.texts) if text.strip() not in seen]
    if not keep:
        fail(f"every one of the {len(data.texts)} posts is in --exclude: nothing left to score")
    excluded = len(data.texts) - len(keep)
    if excluded:
        data = Split([data.texts[i] for i in keep], [data.labels[i] for i in keep], [data.languages[i] for i in keep])
    result = evaluate_sentiment(data, _sentiment_predictor(_annotator(obj, True, False, heads=False)))
    result["excluded"] = excluded
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['examples']} examples ({split})" + (f", {excluded} excluded (in --exclude)" if excluded else ""))
    if umsab:
        for lang, f1 in result["macro_f1"].items():
            click.echo(f"  macro-F1 {lang:<11} {f1:6.2f}")
    else:
        click.echo(f"  macro-recall {result['macro_recall']:6.2f}   macro-F1 {result['macro_f1']['all']:6.2f}")
    click.echo(f"  calibration error (ECE) {result['ece']:5.2f}")


def _scored(annotator, texts):
    from tqdm import tqdm

    from stimmung.models.evaluate import score_texts

    with tqdm(total=len(texts), desc="encoding", unit=" texts", file=sys.stderr) as bar:
        return score_texts(annotator, texts, progress=bar.update)


def _fig(f: dict) -> str:
    return (f"precision {f['precision']:6.2f}  recall {f['recall']:6.2f}  F1 {f['f1']:6.2f}  macro-F1 {f['macro_f1']:6.2f}"
            + (f"  ECE {f['ece']:5.2f}" if "ece" in f else ""))


@models_evaluate.command("germeval")
@click.option("--tsv", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--part", type=click.Choice(["heldout", "tune", "all"]), default="heldout", show_default=True,
              help="Our carve-out of GermEval dev (see models/README.md), or all rows.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models_evaluate_germeval(obj: Context, tsv: Path, part: str, as_json: bool) -> None:
    """GermEval 2017 TSV: sentiment, relevance, complaint (relevant+negative) and aspect figures;
    prototype labels as the baseline, calibration error for every head."""
    from stimmung.models.datasets import DatasetError, read_germeval
    from stimmung.models.evaluate import evaluate_germeval, germeval_select

    try:
        docs = read_germeval(tsv)
    except DatasetError as err:
        fail(str(err))
    if not germeval_select(docs, part):
        fail(f"{tsv}: none of its {len(docs)} documents is in the {part!r} part of our GermEval carve-out "
             "(models/README.md); pass --part all to score a file that is entirely held out")
    annotator = _annotator(obj, True, True, heads=True)
    result = evaluate_germeval(docs, _scored(annotator, [d.text for d in germeval_select(docs, part)]), part)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"GermEval 2017 ({result['part']}): {result['documents']} documents")
    click.echo(f"  sentiment micro-F1 {result['sentiment_micro_f1']:6.2f}  ECE {result['sentiment_ece']:5.2f}")
    if "brand_sentiment_micro_f1" in result:
        click.echo(f"  brand sentiment micro-F1 {result['brand_sentiment_micro_f1']:6.2f}  "
                   f"ECE {result['brand_sentiment_ece']:5.2f}  (majority class {result['majority_class_micro_f1']:6.2f})")
    for name in ("relevance", "complaint"):
        if name in result:
            click.echo(f"  {name:<10} head      {_fig(result[name])}")
        click.echo(f"  {name:<10} prototype {_fig(result['prototype'][name])}")
    if "aspects" in result:
        a = result["aspects"]
        click.echo(f"  aspects micro-F1 {a['micro_f1']:6.2f} (prototype {a['prototype_micro_f1']:6.2f})")
        for label, f in a["labels"].items():
            click.echo(f"    {label:<17} support {f['support']:4d}  {_fig(f)}  (prototype F1 {f['prototype_f1']:6.2f})")


@models_evaluate.command("complaints")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="CSV with columns id,text,complaint[,domain] (complaint 1/0).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models_evaluate_complaints(obj: Context, csv_file: Path, as_json: bool) -> None:
    """Complaint detection: complaint-class precision/recall/F1, macro-F1, calibration error,
    per domain, with the prototype label as the baseline in the same run."""
    from stimmung.models.datasets import DatasetError, read_complaints
    from stimmung.models.evaluate import evaluate_complaints

    try:
        rows = read_complaints(csv_file)
    except DatasetError as err:
        fail(str(err))
    annotator = _annotator(obj, True, True, heads=True)
    try:
        result = evaluate_complaints(rows, _scored(annotator, [r.text for r in rows]))
    except ValueError as err:
        fail(str(err))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['examples']} examples")
    click.echo(f"  head      {_fig(result)}")
    click.echo(f"  prototype {_fig(result['prototype'])}")
    for domain, f in result.get("domains", {}).items():
        click.echo(f"  {domain:<13} head {_fig(f)}   prototype F1 {f['prototype']['f1']:6.2f}")


@models.command("train-labels")
@click.argument("jsonl", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Head name (default: the file's name); the file is <dir>/<name>.safetensors")
@click.option("--min-examples", default=8, show_default=True, help="Positives (and negatives) a label needs")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models_train_labels(obj: Context, jsonl: Path, name: str | None, min_examples: int, as_json: bool) -> None:
    """Train a head for custom labels from operator-labelled JSONL, one post per line:
    {"text": "...", "topics": ["label", ...]}. Include posts that carry none of the labels
    ("topics": []), or the head never learns what is *not* one of them. Saved as
    <models.custom_heads_dir>/<name>.safetensors, where the enricher finds it; a head of the same
    name is replaced."""
    from stimmung.models import custom_heads_dir
    from stimmung.models.custom import TrainLabelsError, train_custom_head, trainable_labels
    from stimmung.models.datasets import DatasetError, read_topic_jsonl

    name = name or jsonl.stem
    if not HEAD_NAME.fullmatch(name):
        fail(f"head name {name!r}: use letters, digits, '_' and '-' only (it names <dir>/<name>.safetensors); "
             "pass --name")
    try:
        examples = read_topic_jsonl(jsonl)
        trainable_labels(examples, min_examples)  # before the model loads: a too-small file fails fast
    except DatasetError as err:
        fail(str(err))
    except TrainLabelsError as err:
        fail(f"{jsonl}: {err}")
    annotator = _annotator(obj, False, False, heads=False, shared_pass=True)
    target = custom_heads_dir(obj.settings.models) / f"{name}.safetensors"
    replacing = target.is_file()
    try:
        result = train_custom_head(annotator, examples, target, min_examples=min_examples)
    except TrainLabelsError as err:
        fail(f"{jsonl}: {err}")
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"saved {result['path']} ({result['examples']} examples, labels: {', '.join(result['labels'])})"
               + (" - replaced the head of that name" if replacing else ""))
    for label, f in result["cv"].items():
        click.echo(f"  {label:<20} {result['folds']}-fold CV on your examples: precision {f['precision']:6.2f} "
                   f"recall {f['recall']:6.2f} F1 {f['f1']:6.2f}  ECE {f['ece']:5.2f}")
    for label in result["skipped"]:
        click.echo(f"  {label}: skipped, fewer than {min_examples} positive or negative examples (keeps the prototype)")


def _print_topic_figures(figures: dict) -> None:
    for label, fig in figures.items():
        p = "-" if fig["precision"] is None else f"{fig['precision']:.1f}"
        r = "-" if fig["recall"] is None else f"{fig['recall']:.1f}"
        click.echo(f"  topic {label:<17} support {fig['support']:4d}  precision {p:>5}  recall {r:>5}")


@models_evaluate.command("topics")
@click.option("--jsonl", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON Lines with 'text' and 'topics' (e.g. models/eval/crm_posts_v1.jsonl).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models_evaluate_topics(obj: Context, jsonl: Path, as_json: bool) -> None:
    """Topic precision/recall per label on a labelled JSONL set."""
    from stimmung.models.datasets import DatasetError, read_topic_jsonl
    from stimmung.models.evaluate import evaluate_topics

    try:
        examples = read_topic_jsonl(jsonl)
    except DatasetError as err:
        fail(str(err))
    # Topics as the pipeline computes them: with the builtin sentiment model loaded, they come from
    # the same single pass (see models/encoder.py).
    annotator = _annotator(obj, obj.settings.models.sentiment == "builtin", True)

    result = evaluate_topics(examples, _topic_predictor(annotator), annotator.topics.taxonomy.names)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['examples']} examples: micro precision {result['micro_precision']}, "
               f"micro recall {result['micro_recall']}")
    _print_topic_figures(result["labels"])
