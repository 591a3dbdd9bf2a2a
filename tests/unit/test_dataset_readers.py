"""The labelled-data readers refuse bad files with the file, the line and what is wrong."""

import pytest

from stimmung.models.datasets import DatasetError, read_complaints, read_germeval, read_topic_jsonl, read_umsab

GERMEVAL_HEADER = "id\ttext\trelevance\tsentiment\tcategory\n"


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    # Excel's "CSV UTF-8" starts the file with a BOM; the id column must still be found
    path = tmp_path / "excel.csv"
    path.write_bytes("id,text,complaint\n1,Paket seit zwei Wochen weg,1\n".encode("utf-8-sig"))
    rows = read_complaints(path)
    assert [(r.id, r.complaint) for r in rows] == [("1", True)]


@pytest.mark.parametrize("reader, name, content", [
    (read_complaints, "latin1.csv", "id,text,complaint\n1,fine,0\n2,Lieferung für Köln,1\n"),
    (read_germeval, "latin1.tsv", GERMEVAL_HEADER + "a\tfine\ttrue\tneutral\t\nb\tVerspätung in Köln\ttrue\tnegative\t\n"),
    (read_topic_jsonl, "latin1.jsonl", '{"text": "a", "topics": []}\n{"text": "b", "topics": []}\n{"text": "Köln", "topics": ["x"]}\n'),
])
def test_a_file_that_is_not_utf8_names_the_line_of_the_first_bad_byte(tmp_path, reader, name, content):
    path = tmp_path / name
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(DatasetError, match=rf"{name}:3: not UTF-8 text \(byte 0x(fc|f6|e4)\); save the file as UTF-8"):
        reader(path)


def test_umsab_files_that_are_not_utf8_are_refused_by_name(tmp_path):
    (tmp_path / "german").mkdir()
    (tmp_path / "german" / "val_text.txt").write_bytes("schön\n".encode("latin-1"))
    (tmp_path / "german" / "val_labels.txt").write_text("2\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"val_text.txt:1: not UTF-8"):
        read_umsab(tmp_path, "val")


@pytest.mark.parametrize("reader, name", [(read_complaints, "empty.csv"), (read_germeval, "empty.tsv")])
def test_an_empty_file_says_so_and_which_header_it_needs(tmp_path, reader, name):
    path = tmp_path / name
    path.write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"{name}: empty file \(expected a header line"):
        reader(path)


def test_a_semicolon_csv_is_told_the_separator(tmp_path):
    path = tmp_path / "semicolon.csv"
    path.write_text("id;text;complaint\n1;kaputt;1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"semicolon.csv:1: missing column\(s\) .*comma-separated"):
        read_complaints(path)


def test_a_short_germeval_row_says_how_many_columns_it_has(tmp_path):
    path = tmp_path / "short.tsv"
    path.write_text(GERMEVAL_HEADER + "a\tfine\ttrue\tneutral\t\nb\tonly two\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"short.tsv:3: expected 5 tab-separated columns, found 2"):
        read_germeval(path)


def test_a_germeval_file_with_only_a_header_has_no_rows(tmp_path):
    path = tmp_path / "header.tsv"
    path.write_text(GERMEVAL_HEADER, encoding="utf-8")
    with pytest.raises(DatasetError, match=r"header.tsv: no rows"):
        read_germeval(path)


def test_good_germeval_rows_of_one_document_are_merged(tmp_path):
    path = tmp_path / "good.tsv"
    path.write_text(GERMEVAL_HEADER + "a\tZug fällt aus\ttrue\tnegative\tAllgemein#Haupt:negative\n"
                    "a\tZug fällt aus\ttrue\tnegative\tZugfahrt#Haupt:negative\n", encoding="utf-8")
    (doc,) = read_germeval(path)
    assert doc.relevant and doc.sentiment == "negative" and doc.categories == {"Allgemein", "Zugfahrt"}
