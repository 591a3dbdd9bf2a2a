import pytest

from stimmung.config import ConfigError, load_settings, read_secret


def test_defaults_load(monkeypatch):
    s = load_settings()
    assert s.kafka.topics.raw == "stimmung.mentions.raw"
    assert s.elasticsearch.url.startswith("http://")


def test_env_overrides_nested_fields(monkeypatch):
    monkeypatch.setenv("STIMMUNG_KAFKA__BOOTSTRAP_SERVERS", "a:1, b:2")
    monkeypatch.setenv("STIMMUNG_KAFKA__TOPICS__PARTITIONS", "6")
    s = load_settings()
    assert s.kafka.bootstrap_list == ["a:1", "b:2"]
    assert s.kafka.topics.partitions == 6


def test_yaml_file_and_env_priority(tmp_path, monkeypatch):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("kafka:\n  topics:\n    raw: from-yaml\n    enriched: e-yaml\npipeline:\n  sink_batch_size: 7\n")
    monkeypatch.setenv("STIMMUNG_KAFKA__TOPICS__ENRICHED", "e-env")
    s = load_settings(cfg)
    assert s.kafka.topics.raw == "from-yaml"
    assert s.kafka.topics.enriched == "e-env"
    assert s.pipeline.sink_batch_size == 7


def test_errors_name_the_bad_field(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("kafka:\n  topics:\n    partitions: 0\nelasticsearch:\n  url: localhost:9200\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    text = str(err.value)
    assert "kafka.topics.partitions" in text
    assert "elasticsearch.url" in text


def test_unknown_field_and_missing_file_are_clear(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("kafak:\n  x: 1\n")
    with pytest.raises(ConfigError, match="kafak"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.yaml")


def test_import_mapping_is_validated(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("importer:\n  columns:\n    native_id: id\n    text: body\n    bogus: x\n")
    with pytest.raises(ConfigError, match="importer.columns.*bogus"):
        load_settings(cfg)


def test_secrets_from_file_and_env_are_masked(tmp_path, monkeypatch):
    secret = tmp_path / "key"
    secret.write_text("s3cr3t-from-file\n")
    monkeypatch.setenv("STIMMUNG_PRIVACY__PSEUDONYM_KEY", "from-env-0123456789")
    s = load_settings()
    assert "from-env" not in repr(s) and "from-env" not in s.model_dump_json()
    assert read_secret(s.privacy.pseudonym_key, None, "k") == "from-env-0123456789"
    assert read_secret(s.privacy.pseudonym_key, secret, "k") == "s3cr3t-from-file"
    with pytest.raises(ConfigError, match="cannot read secret file"):
        read_secret(None, tmp_path / "nope", "k")


def test_stack_ports_must_differ(monkeypatch):
    monkeypatch.setenv("STIMMUNG_STACK__ES_HTTP_PORT", "9092")
    with pytest.raises(ConfigError, match="distinct"):
        load_settings()


def test_misspelled_nested_settings_are_refused_with_a_suggestion(tmp_path):
    config = tmp_path / "typos.yaml"
    config.write_text("elasticsearch:\n  ulr: http://es:9200\nkafka:\n  bootstrap_server: kafka:9092\n"
                      "crm:\n  route: []\nalerting:\n  detector: {min_cnt: 3}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    message = str(err.value)
    assert "elasticsearch.ulr: unknown setting (did you mean 'url'?)" in message
    assert "kafka.bootstrap_server: unknown setting (did you mean 'bootstrap_servers'?)" in message
    assert "crm.route: unknown setting (did you mean 'routes'?)" in message
    assert "alerting.detector.min_cnt: unknown setting" in message


def test_a_misspelled_nested_environment_variable_is_refused(monkeypatch):
    monkeypatch.setenv("STIMMUNG_ELASTICSEARCH__ULR", "http://es:9200")
    with pytest.raises(ConfigError, match="elasticsearch.ulr: unknown setting"):
        load_settings()


def test_settings_file_lookup_order_flag_then_env_then_default(tmp_path, monkeypatch):
    from stimmung.config import default_config_path, settings_file

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    default = default_config_path()
    assert default == tmp_path / "xdg" / "stimmung" / "config.yaml"
    # nothing anywhere: defaults only, no error
    assert settings_file() is None and load_settings().source_file is None
    default.parent.mkdir(parents=True)
    default.write_text("brands: [{name: Nordbahn, queries: [Nordbahn]}]\n")
    s = load_settings()
    assert s.source_file == default and s.brands[0].name == "Nordbahn"
    named = tmp_path / "named.yaml"
    named.write_text("brands: [{name: Lumio, queries: [Lumio]}]\n")
    monkeypatch.setenv("STIMMUNG_CONFIG", str(named))
    assert load_settings().brands[0].name == "Lumio" and load_settings().source_file == named
    flagged = tmp_path / "flag.yaml"
    flagged.write_text("brands: []\n")
    s = load_settings(flagged)
    assert s.brands == [] and s.source_file == flagged
    # an empty STIMMUNG_CONFIG turns the default file off too
    monkeypatch.setenv("STIMMUNG_CONFIG", "")
    assert load_settings().brands == [] and load_settings().source_file is None
    # the environment still wins over the default file
    monkeypatch.delenv("STIMMUNG_CONFIG")
    monkeypatch.setenv("STIMMUNG_BRANDS", '[{"name": "Kaufhafen", "queries": ["Kaufhafen"]}]')
    assert load_settings().brands[0].name == "Kaufhafen"


def test_a_broken_default_settings_file_is_named_in_the_error(tmp_path, monkeypatch):
    from stimmung.config import default_config_path

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    default_config_path().parent.mkdir(parents=True)
    default_config_path().write_text("kafka: {bootstrap_server: x:1}\n")
    with pytest.raises(ConfigError, match="config.yaml"):
        load_settings()
