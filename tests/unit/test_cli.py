from click.testing import CliRunner

from stimmung.cli import main


def test_bad_map_option_is_a_clear_error(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("id,text,created_at\n")
    result = CliRunner().invoke(main, ["import", str(f), "--map", "textmessage"])
    assert result.exit_code == 2 and "--map expects FIELD=COLUMN" in result.output


def test_unknown_mapping_target_names_the_field(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("id,text,created_at\n")
    result = CliRunner().invoke(main, ["import", str(f), "--map", "bogus=col"])
    assert result.exit_code == 2 and "importer.columns" in result.output and "bogus" in result.output


def test_bad_settings_file_is_one_clear_line(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("kafka:\n  topics:\n    partitions: 0\n")
    result = CliRunner().invoke(main, ["--config", str(cfg), "config"])
    assert result.exit_code == 2 and "kafka.topics.partitions" in result.output and "Traceback" not in result.output
