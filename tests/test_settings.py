"""Settings: defaults, the config directory's block, a settings file, the environment."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from daemon.definition.config import ConfigErrors
from daemon.definition.model import EslNode, Settings
from daemon.definition.settings import load_settings

REPO = Path(__file__).resolve().parent.parent


def test_defaults_when_nothing_is_configured(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no config/ here
    settings = load_settings(env={})
    assert settings == Settings()
    assert settings.config_dir == "config"
    assert settings.database_url == "sqlite:///hotline.db"
    assert settings.redis_url is None
    assert settings.esl_nodes == (EslNode("local", "127.0.0.1", 8021, "ClueCon"),)


def test_the_example_settings_block_restates_the_defaults(monkeypatch):
    monkeypatch.chdir(REPO)
    assert load_settings(env={}) == Settings()


def test_config_dir_block_then_file_then_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "center"
    cfg.mkdir()
    (cfg / "settings.yaml").write_text(
        "settings:\n  database_url: sqlite:///dir.db\n  journal_dir: /var/j\n"
        "  redis_url: redis://127.0.0.1:6379/0\n")
    file = tmp_path / "hotline.yaml"
    file.write_text(f"settings:\n  config_dir: {cfg}\n  database_url: sqlite:///file.db\n")
    settings = load_settings(str(file), env={})
    assert settings.config_dir == str(cfg)
    assert settings.database_url == "sqlite:///file.db"  # the file beats the config dir
    assert settings.journal_dir == "/var/j"  # the config dir beats the defaults
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    env = {"HOTLINE_DATABASE_URL": "postgresql://db/hotline", "HOTLINE_REDIS_URL": ""}
    settings = load_settings(str(file), env=env)
    assert settings.database_url == "postgresql://db/hotline"  # the environment beats all
    assert settings.redis_url is None  # set but empty = no Redis


def test_settings_file_from_environment_and_flat_form(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "flat.yaml"
    file.write_text("database_url: sqlite:///flat.db\nhttp_listen: 0.0.0.0:9000\n")
    settings = load_settings(env={"HOTLINE_SETTINGS": str(file)})
    assert (settings.database_url, settings.http_listen) == ("sqlite:///flat.db", "0.0.0.0:9000")


def test_hotline_esl_lists_several_nodes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"HOTLINE_ESL": "fs1=10.0.0.1:8021:s1, 10.0.0.2:8022:pa:ss,10.0.0.3"}
    nodes = load_settings(env=env).esl_nodes
    assert nodes == (EslNode("fs1", "10.0.0.1", 8021, "s1"),
                     EslNode("10.0.0.2", "10.0.0.2", 8022, "pa:ss"),
                     EslNode("10.0.0.3", "10.0.0.3", 8021, "ClueCon"))
    assert load_settings(env={"HOTLINE_ESL": "10.1.1.1:8021:x"}).esl_nodes == (
        EslNode("local", "10.1.1.1", 8021, "x"),)
    assert "pa:ss" not in repr(nodes)  # passwords stay out of logs


def test_hotline_config_dir_selects_the_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "s.yaml").write_text("settings:\n  journal_dir: from-other\n")
    settings = load_settings(env={"HOTLINE_CONFIG_DIR": str(other)})
    assert (settings.config_dir, settings.journal_dir) == (str(other), "from-other")


def test_esl_nodes_in_yaml_with_secret_references(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "s.yaml"
    file.write_text("settings:\n  esl:\n    - {name: a, host: 10.0.0.1, password: '${ESL_A}'}\n"
                    "    - {name: b, host: 10.0.0.2, port: 8022}\n")
    nodes = load_settings(str(file), env={"ESL_A": "topsecret"}).esl_nodes
    assert nodes == (EslNode("a", "10.0.0.1", 8021, "topsecret"),
                     EslNode("b", "10.0.0.2", 8022, "ClueCon"))
    with pytest.raises(ConfigErrors) as info:
        load_settings(str(file), env={})
    assert [str(e) for e in info.value.errors] == [
        f"{file}:3:43: 'password' of ESL node 1 of 'esl' of the settings refers to the "
        f"environment variable ESL_A, which is not set (set it, or write ${{ESL_A:-default}})."]


def test_settings_errors_carry_file_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "s.yaml"
    file.write_text("settings:\n  databse_url: x\n  journal_max_bytes: 10\n"
                    "  esl: [{host: h, port: abc}]\n")
    with pytest.raises(ConfigErrors) as info:
        load_settings(str(file), env={})
    assert [str(e) for e in info.value.errors] == [
        f"{file}:2:3: unknown key 'databse_url' in the settings; did you mean 'database_url'?",
        f"{file}:3:22: 'journal_max_bytes' of the settings must be at least 1048576, not 10.",
        f"{file}:4:25: 'port' of ESL node 1 of 'esl' of the settings must be a whole number, "
        f"not 'abc'.",
    ]


def test_config_dir_cannot_be_set_inside_the_config_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "settings.yaml").write_text("settings:\n  config_dir: elsewhere\n")
    with pytest.raises(ConfigErrors) as info:
        load_settings(env={})
    assert [str(e) for e in info.value.errors] == [
        f"config/settings.yaml:2:3: config_dir cannot be set inside the config directory; set it "
        f"in a settings file or HOTLINE_CONFIG_DIR."]


def test_bad_environment_values_and_missing_settings_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigErrors) as info:
        load_settings(str(tmp_path / "missing.yaml"), env={"HOTLINE_ESL": "host:port:pw"})
    assert sorted(str(e) for e in info.value.errors) == sorted([
        "$HOTLINE_ESL: the port is not a number ([name=]host[:port[:password]]).",
        f"{tmp_path / 'missing.yaml'}: the settings file does not exist.",
    ])


def test_a_broken_config_file_does_not_stop_the_settings(tmp_path, monkeypatch):
    """load_center reports the broken file; the daemon still learns where its database is."""
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "a.yaml").write_text("tenants: [\n")
    (cfg / "b.yaml").write_text("settings:\n  database_url: sqlite:///b.db\n")
    assert load_settings(env={}).database_url == "sqlite:///b.db"


def test_settings_block_errors_are_reported_by_validate(tmp_path):
    from daemon.definition.config import load_center

    shutil.copytree(REPO / "config", tmp_path / "c")
    f = tmp_path / "c" / "settings.yaml"
    f.write_text(f.read_text().replace("journal_dir: journal", "journal_dri: journal"))
    with pytest.raises(ConfigErrors) as info:
        load_center(tmp_path / "c", env={})
    line = next(i for i, t in enumerate(f.read_text().splitlines(), 1) if "journal_dri" in t)
    assert [str(e) for e in info.value.errors] == [
        f"{f}:{line}:3: unknown key 'journal_dri' in the settings in the config directory; did "
        f"you mean 'journal_dir'?"]


def test_the_http_api_address_comes_from_the_environment_and_empty_turns_it_off(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={}).http_listen == "127.0.0.1:8089"
    assert load_settings(env={"HOTLINE_HTTP_LISTEN": "127.0.0.1:9099"}).http_listen == (
        "127.0.0.1:9099")
    assert load_settings(env={"HOTLINE_HTTP_LISTEN": ""}).http_listen == ""


def test_a_password_may_hold_colons():
    nodes = load_settings(env={"HOTLINE_ESL": "fs1:8021:TOPSECRET:x"}).esl_nodes
    assert nodes[0].password == "TOPSECRET:x"


@pytest.mark.parametrize("value", [
    "vm127.0.0.1-1-TOPSECRET",        # an address run into a password: not a host name
    "127.0.0.1:80x21:TOPSECRET",      # a bad port
    "127.0.0.1:99999:TOPSECRET",      # a port out of range
    "fs one=127.0.0.1:8021:TOPSECRET",  # a bad node name
    "ok.example:8021:pw, bad_host!:8021:TOPSECRET",
    "TOPSECRET@127.0.0.1:8021",
])
def test_a_malformed_hotline_esl_is_refused_without_echoing_the_password(tmp_path, monkeypatch,
                                                                       value):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigErrors) as info:
        load_settings(env={"HOTLINE_ESL": value})
    text = " ".join(str(e) for e in info.value.errors)
    assert len(info.value.errors) == 1 and text.startswith("$HOTLINE_ESL: "), text
    assert "$HOTLINE_ESL: $HOTLINE_ESL" not in text
    assert "TOPSECRET" not in text


@pytest.mark.parametrize("host", ["fs1", "freeswitch.example.com", "10.0.0.7", "[::1]",
                                  "fs-1.dc2.example", "localhost."])
def test_host_names_and_addresses_are_accepted(host):
    node = load_settings(env={"HOTLINE_ESL": f"{host}:8022:pw"}).esl_nodes[0]
    assert (node.host, node.port, node.password) == (host.strip("[]"), 8022, "pw")


def test_a_yaml_esl_host_that_is_not_a_host_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "s.yaml"
    file.write_text("esl:\n  - {host: 'vm127.0.0.1-1-x', password: TOPSECRET}\n")
    with pytest.raises(ConfigErrors) as info:
        load_settings(str(file), env={})
    assert [str(e) for e in info.value.errors] == [
        f"{file}:2:12: 'host' of ESL node 1 of 'esl' of the settings is not a host name or "
        f"an IP address."]


def test_journal_retention_compression_and_summary_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    defaults = load_settings(env={})
    assert (defaults.journal_compress, defaults.journal_retention_days,
            defaults.summary_interval_s) == (True, 90, 60.0)
    file = tmp_path / "s.yaml"
    file.write_text("journal_compress: false\njournal_retention_days: 0\nsummary_interval_s: 5\n")
    s = load_settings(str(file), env={})
    assert (s.journal_compress, s.journal_retention_days, s.summary_interval_s) == (False, 0, 5.0)
    file.write_text("journal_compress: gzip\njournal_retention_days: -1\nsummary_interval_s: x\n")
    with pytest.raises(ConfigErrors) as info:
        load_settings(str(file), env={})
    assert [str(e) for e in info.value.errors] == [
        f"{file}:1:19: 'journal_compress' of the settings must be true or false, not 'gzip'.",
        f"{file}:2:25: 'journal_retention_days' of the settings must be at least 0, not -1.",
        f"{file}:3:21: 'summary_interval_s' of the settings must be a number, not 'x'."]
