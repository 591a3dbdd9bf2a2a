import pytest
from click.testing import CliRunner

from stimmung.cli import main
from stimmung.models.datasets import DatasetError, read_germeval, read_tweeteval, read_umsab


def write_pair(d, split, texts, labels):
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{split}_text.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    (d / f"{split}_labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")


def test_umsab_layout_reads_every_language(tmp_path):
    write_pair(tmp_path / "german", "val", ["gut", "schlecht"], ["2", "0"])
    write_pair(tmp_path / "english", "val", ["meh"], ["1"])
    split = read_umsab(tmp_path, "val")
    assert split.labels == [1, 2, 0] and split.languages == ["english", "german", "german"]


@pytest.mark.parametrize("texts,labels,message", [
    (["a", "b"], ["0"], "has 2 lines but"),
    (["a"], ["3"], "is not 0, 1 or 2"),
])
def test_malformed_files_are_named(tmp_path, texts, labels, message):
    write_pair(tmp_path, "val", texts, labels)
    with pytest.raises(DatasetError, match=message):
        read_tweeteval(tmp_path, "val")


def test_germeval_merges_repeated_documents(tmp_path):
    f = tmp_path / "g.tsv"
    f.write_text("id\ttext\trelevance\tsentiment\tcategory\n"
                 "u1\tZug zu spät\ttrue\tnegative\tZugfahrt#Haupt\n"
                 "u1\tZug zu spät\ttrue\tnegative\tTicketkauf#Preis\n"
                 "u2\tSchönes Wetter\tfalse\tneutral\t\n", encoding="utf-8")
    docs = read_germeval(f)
    assert len(docs) == 2 and docs[0].categories == {"Zugfahrt", "Ticketkauf"} and not docs[1].relevant
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\ttext\trelevance\tsentiment\tcategory\nu\tx\tmaybe\tnegative\t\n")
    with pytest.raises(DatasetError, match="relevance 'maybe'"):
        read_germeval(bad)


def test_evaluate_command_fails_clearly_on_a_malformed_file(tmp_path):
    write_pair(tmp_path, "val", ["a", "b"], ["0", "x"])
    result = CliRunner().invoke(main, ["models", "evaluate", "sentiment", "--tweeteval", str(tmp_path)])
    assert result.exit_code != 0
    assert "is not 0, 1 or 2" in result.output


def test_evaluate_sentiment_scores_only_posts_outside_exclude(tmp_path):
    """TweetEval's sentiment val holds most of UMSAB English train and val (what the builtin model
    trained on): --exclude drops posts the model saw, and says how many."""
    import json

    posts = ["I love this phone, best purchase ever!", "The delivery is three weeks late, awful.",
             "The shop opens at nine.", "Worst support I have ever had.", "Thanks, that fixed it!"]
    write_pair(tmp_path, "val", posts, ["2", "0", "1", "0", "2"])
    seen = tmp_path / "train_text.txt"
    seen.write_text(posts[0] + "\n  " + posts[3] + "  \nsomething else\n")
    result = CliRunner().invoke(main, ["models", "evaluate", "sentiment", "--tweeteval", str(tmp_path),
                                       "--exclude", str(seen), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output[result.output.index("{"):])
    assert figures["examples"] == 3 and figures["excluded"] == 2
    everything = tmp_path / "all.txt"
    everything.write_text("\n".join(posts))
    result = CliRunner().invoke(main, ["models", "evaluate", "sentiment", "--tweeteval", str(tmp_path),
                                       "--exclude", str(everything)])
    assert result.exit_code != 0 and "nothing left to score" in result.output
