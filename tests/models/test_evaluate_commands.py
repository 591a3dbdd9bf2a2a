"""`stimmung models evaluate complaints|germeval` and `train-labels` on small slices of the real data."""

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stimmung.cli import main

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "complaints" / "train.csv").is_file(), reason="../shared/data not present")


def _slice_complaints(tmp_path, n=40):
    with open(DATA / "complaints" / "train.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    picked = [r for r in rows if r["complaint"] == "1"][: n // 2] + [r for r in rows if r["complaint"] == "0"][: n // 2]
    path = tmp_path / "slice.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "text", "complaint", "domain"])
        writer.writeheader()
        writer.writerows(picked)
    return path


@needs_data
def test_evaluate_complaints_reports_figures_per_domain_with_the_prototype_baseline(tmp_path):
    result = CliRunner().invoke(main, ["models", "evaluate", "complaints", "--csv", str(_slice_complaints(tmp_path)),
                                       "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout[result.stdout.index("{"):])
    assert figures["examples"] == 40
    for key in ("precision", "recall", "f1", "macro_f1", "ece"):
        assert 0 <= figures[key] <= 100
    assert figures["support"] == 20
    # the training rows themselves: the head must do far better than chance (and than the prototype)
    assert figures["macro_f1"] > 80 and figures["macro_f1"] > figures["prototype"]["macro_f1"]
    assert figures["domains"] and all("prototype" in d for d in figures["domains"].values())


def test_evaluate_complaints_names_file_and_line_of_a_malformed_row(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text,complaint\n1,fine,1\n2,also fine,0\n3,broken,maybe\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["models", "evaluate", "complaints", "--csv", str(bad)])
    assert result.exit_code != 0
    assert f"{bad}:4" in result.output and "maybe" in result.output
    missing = tmp_path / "missing.csv"
    missing.write_text("id,text\n1,x\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["models", "evaluate", "complaints", "--csv", str(missing)])
    assert result.exit_code != 0 and "complaint" in result.output and str(missing) in result.output


def test_evaluate_germeval_refuses_a_file_with_nothing_in_the_chosen_part(tmp_path):
    from stimmung.models.datasets import read_germeval
    from stimmung.models.evaluate import germeval_part

    rows = [f"d{i}\tDie Bahn ist {i} Minuten zu spät\ttrue\tnegative\t" for i in range(40)]
    path = tmp_path / "ours.tsv"
    path.write_text("id\ttext\trelevance\tsentiment\tcategory\n" + "\n".join(rows) + "\n", encoding="utf-8")
    tune_only = [r for r, d in zip(rows, read_germeval(path)) if germeval_part(d) == "tune"]
    path.write_text("id\ttext\trelevance\tsentiment\tcategory\n" + "\n".join(tune_only) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["models", "evaluate", "germeval", "--tsv", str(path)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"{path}: none of its {len(tune_only)} documents is in the 'heldout' part" in result.output
    assert "--part all" in result.output


@needs_data
def test_evaluate_germeval_all_reports_relevance_complaint_aspects_and_calibration(tmp_path):
    lines = (DATA / "germeval2017" / "dev.tsv").read_text(encoding="utf-8").splitlines()
    part = tmp_path / "part.tsv"
    part.write_text("\n".join(lines[:61]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["models", "evaluate", "germeval", "--tsv", str(part), "--part", "all", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout[result.stdout.index("{"):])
    assert figures["part"] == "all" and figures["documents"] > 30
    assert {"relevance", "complaint", "aspects", "prototype", "sentiment_ece"} <= set(figures)
    assert "ece" in figures["relevance"] and "ece" in figures["complaint"]
    assert 0 <= figures["brand_sentiment_micro_f1"] <= 100 and figures["brand_sentiment_ece"] >= 0
    assert set(figures["aspects"]["labels"]) == {"delivery", "pricing_billing", "product_quality", "customer_service",
                                                 "app_website", "outage", "safety"}


def test_train_labels_saves_a_head_the_enricher_uses(tmp_path, monkeypatch):
    """An operator's labels (here the project's written CRM set, format only) -> a head file in the
    custom heads directory -> the enricher decides that label with it."""
    from stimmung.models import Annotations, MentionText
    from stimmung.models.annotators import E5Annotator

    source = Path(__file__).resolve().parents[2] / "models" / "eval" / "crm_posts_v1.jsonl"
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    labelled = tmp_path / "labels.jsonl"
    labelled.write_text("\n".join(json.dumps({"text": r["text"], "topics": [t for t in r["topics"] if t == "delivery"]
                                              + (["billing_dispute"] if "pricing_billing" in r["topics"] else [])})
                                  for r in rows) + "\n", encoding="utf-8")
    heads = tmp_path / "heads"
    monkeypatch.setenv("STIMMUNG_MODELS__CUSTOM_HEADS_DIR", str(heads))
    result = CliRunner().invoke(main, ["models", "train-labels", str(labelled), "--name", "ours", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["labels"] == ["billing_dispute", "delivery"] and (heads / "ours.safetensors").is_file()
    assert 0 <= report["cv"]["delivery"]["f1"] <= 100 and "ece" in report["cv"]["delivery"]

    annotator = E5Annotator(custom_heads_dir=heads)
    out = [Annotations()]
    annotator.annotate([MentionText("Meine Rechnung ist doppelt abgebucht worden, bitte erstatten!")], out)
    assert "billing_dispute" in annotator.heads.topic_labels
    assert "ours" in annotator.versions["heads"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "topics": []}\nnot json\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["models", "train-labels", str(bad)])
    assert result.exit_code != 0 and f"{bad}:2" in result.output
    # the name becomes a file name in the heads directory: nothing may escape it
    result = CliRunner().invoke(main, ["models", "train-labels", str(labelled), "--name", "../escape"])
    assert result.exit_code != 0 and "head name '../escape'" in result.output
    assert not (tmp_path / "escape.safetensors").exists()


def test_train_labels_with_too_few_examples_fails_before_the_model_loads(tmp_path, monkeypatch):
    import stimmung.commands.models as commands

    def no_model(*_args, **_kwargs):
        raise AssertionError("the model was loaded for a file that cannot train a head")

    monkeypatch.setattr(commands, "_annotator", no_model)
    few = tmp_path / "few.jsonl"
    rows = [{"text": f"Paket {n} kam nicht an", "topics": ["delivery"]} for n in range(3)]
    rows += [{"text": f"Schöner Tag {n}", "topics": []} for n in range(20)]
    few.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["models", "train-labels", str(few)])
    assert result.exit_code != 0
    assert f"{few}: no label has at least 8 positive" in result.output and "'delivery': 3" in result.output
