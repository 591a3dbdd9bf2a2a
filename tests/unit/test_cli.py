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


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_subprocess(*args, env_extra=None, timeout=60):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("STIMMUNG_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "stimmung.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_an_unreachable_elasticsearch_is_one_clear_line_not_a_traceback():
    url = f"http://127.0.0.1:{_closed_port()}"
    for args in (("search", "Nordbahn"), ("cases", "list")):
        done = _run_subprocess(*args, env_extra={"STIMMUNG_ELASTICSEARCH__URL": url,
                                                 "STIMMUNG_ELASTICSEARCH__REQUEST_TIMEOUT_S": "2"})
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert f"elasticsearch is not reachable at {url}" in done.stderr


def test_an_unreachable_kafka_is_one_clear_line_quickly():
    import time

    brokers = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    done = _run_subprocess("setup", "--wait", "3", "--no-kibana", env_extra={"STIMMUNG_KAFKA__BOOTSTRAP_SERVERS": brokers})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert brokers in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3, done.stderr  # no page of client retry errors
    assert time.monotonic() - started < 45


def test_kibana_export_writes_to_stdout_unless_told_where(tmp_path):
    from stimmung.kibana import NDJSON_PATH

    before = NDJSON_PATH.read_bytes()
    done = CliRunner().invoke(main, ["kibana", "export"])
    assert done.exit_code == 0 and done.output.count("\n") > 10 and '"type": "dashboard"' in done.output.replace('":"', '": "')
    assert NDJSON_PATH.read_bytes() == before, "the repository's copy is not overwritten"
    out = tmp_path / "objects.ndjson"
    assert CliRunner().invoke(main, ["kibana", "export", "--out", str(out)]).exit_code == 0
    assert out.read_text(encoding="utf-8") == done.output
