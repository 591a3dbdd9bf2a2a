import pytest

from stimmung.config import StackSettings
from stimmung.localstack import LocalStack, StackError
from stimmung.localstack.stack import find_java, find_maven


def test_missing_java_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(StackError, match="no Java 17\\+ found.*apt-get install"):
        find_java(StackSettings(java_home=tmp_path / "nojdk"))


def test_missing_maven_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match="Maven .* not found"):
        find_maven()


def test_status_of_a_never_started_stack_is_stopped(tmp_path):
    statuses = LocalStack(StackSettings(state_dir=tmp_path, cache_dir=tmp_path / "c")).status()
    assert [(s.name, s.state) for s in statuses] == [("kafka", "stopped"), ("elasticsearch", "stopped")]


def test_a_stale_pid_file_reads_as_crashed(tmp_path):
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "pid").write_text("999999")
    (kafka,) = LocalStack(StackSettings(state_dir=tmp_path)).status(only=["kafka"])
    assert kafka.state == "crashed"


def test_unknown_service_is_refused(tmp_path):
    with pytest.raises(StackError, match="unknown service"):
        LocalStack(StackSettings(state_dir=tmp_path)).status(only=["zookeeper"])
