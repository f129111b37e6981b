"""Runtime settings: where the config, the database, Redis and the switches are.

Layers, first hit wins (a ChainMap):

1. environment: HOTLINE_CONFIG_DIR, HOTLINE_DATABASE_URL, HOTLINE_REDIS_URL,
   HOTLINE_JOURNAL_DIR, HOTLINE_HTTP_LISTEN, HOTLINE_ESL (``[name=]host:port[:password]``, comma-separated
   for several nodes);
2. a settings file (``path``, else $HOTLINE_SETTINGS): YAML with the settings keys at
   the top level, or under one top-level key ``settings:``;
3. a ``settings:`` block in any file of the config directory (everything but
   ``config_dir``, which cannot point at itself);
4. the defaults of ``model.Settings`` (config/, sqlite:///hotline.db, no Redis, ESL
   127.0.0.1:8021 / ClueCon).

Secrets (ESL passwords, database and Redis URLs) may be ``${VAR}`` or ``${VAR:-default}``.
Relative paths are relative to the current directory.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections import ChainMap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from daemon.definition.model import EslNode, Settings, WebUser
from daemon.definition.reader import _BAD, ConfigErrors, _Reader, config_files
from daemon.definition.yamlsrc import MAX_FILE_BYTES, ConfigError, YamlFileError, YNode, load_yaml

logger = logging.getLogger(__name__)

SETTINGS_KEYS = ("config_dir", "database_url", "redis_url", "esl", "journal_dir",
                 "journal_max_bytes", "freeswitch_conf_dir", "freeswitch_script_dir",
                 "http_listen", "journal_compress", "journal_retention_days",
                 "summary_interval_s", "sms_gateway", "http_users", "http_tls_cert",
                 "http_tls_key", "http_session_minutes",
                 "retention_months", "rollup_interval_s", "callcenter_odbc_dsn",
                 "leader_election")
ENV_KEYS = {"HOTLINE_CONFIG_DIR": "config_dir", "HOTLINE_DATABASE_URL": "database_url",
            "HOTLINE_REDIS_URL": "redis_url", "HOTLINE_JOURNAL_DIR": "journal_dir",
            "HOTLINE_ESL": "esl", "HOTLINE_HTTP_LISTEN": "http_listen"}
_DEFAULTS = Settings()


_Parsed = tuple[str | None, str, int, str]  # name (None = unnamed), host, port, password

ESL_FORMAT = "[name=]host[:port[:password]]"
# a host name label: letters, digits and hyphens, not starting or ending with a hyphen
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def valid_host(host: str) -> bool:
    """An IPv4/IPv6 address or a DNS host name (RFC 1123) whose last label starts with a
    letter - top-level domains do (RFC 3696), so a typo such as ``vm127.0.0.1-1-SECRET``
    (an address run into a password) is refused instead of being resolved and logged."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    return (0 < len(host) <= 253 and all(_LABEL.match(label) for label in labels)
            and labels[-1][0].isalpha())


def _parse_esl_text(text: str, what: str) -> list[_Parsed] | str:
    """``[name=]host:port[:password]`` items, comma-separated; a str return is the error.

    An error names the item by its position and never quotes it: an item holds a
    password, and a malformed one may hold it anywhere.
    """
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        return f"{what + ': ' if what else ''}no ESL node is given."
    parsed: list[_Parsed] = []
    for i, item in enumerate(items, 1):
        which = f"{what} item {i}" if len(items) > 1 else what
        which = which.strip() + ": " if which.strip() else ""
        name = None
        if "=" in item.split(":", 1)[0]:
            name, item = item.split("=", 1)
            if not _LABEL.match(name):
                return (f"{which}the node name must be letters, digits and hyphens "
                        f"({ESL_FORMAT}).")
        if item.startswith("["):  # [IPv6]:port:password
            close = item.find("]")
            host, rest = (item[:close + 1], item[close + 2:]) if close > 0 else (item, "")
        else:
            host, _, rest = item.partition(":")
        port_text, _, password = rest.partition(":")
        if not valid_host(host):
            return (f"{which}the host is not a host name or an IP address ({ESL_FORMAT}; "
                    f"the value is not shown, it may hold the password).")
        if port_text and not port_text.isdigit():
            return f"{which}the port is not a number ({ESL_FORMAT})."
        port = int(port_text) if port_text else 8021
        if not 0 < port < 65536:
            return f"{which}the port must be 1 to 65535, not {port}."
        parsed.append((name, host.strip("[]"), port, password or "ClueCon"))
    return parsed


def _name_nodes(parsed: list[_Parsed]) -> tuple[EslNode, ...]:
    """One unnamed node keeps the default's name ``local``; several go by host (or host:port)."""
    hosts = [p[1] for p in parsed]
    nodes = []
    for name, host, port, password in parsed:
        if name is None:
            name = "local" if len(parsed) == 1 else (host if hosts.count(host) == 1
                                                     else f"{host}:{port}")
        nodes.append(EslNode(name, host, port, password))
    return tuple(nodes)


def _read_settings(r: _Reader, node: YNode, in_config_dir: bool) -> dict[str, Any]:
    what = "the settings in the config directory" if in_config_dir else "the settings"
    body = r.mapping(node, what, SETTINGS_KEYS)
    if body is None:
        return {}
    out: dict[str, Any] = {}
    for key, v in body.items():
        w = f"'{key}' of {what}"
        if key == "config_dir" and in_config_dir:
            r.error(node.keys[key], "config_dir cannot be set inside the config directory; "
                                    "set it in a settings file or HOTLINE_CONFIG_DIR.")
            continue
        if key in ("database_url", "callcenter_odbc_dsn"):
            value = r.secret(v, w)
        elif key == "redis_url":
            value = None if v.is_null else r.secret(v, w)
            value = None if value == "" else value
        elif key == "journal_max_bytes":
            value = r.integer(v, w, 1024 * 1024, None)
        elif key in ("journal_compress", "leader_election"):
            value = r.boolean(v, w)
        elif key == "journal_retention_days":
            value = r.integer(v, w, 0, None)
        elif key == "summary_interval_s":
            value = r.number(v, w, 0.0, None)
        elif key == "retention_months":
            value = r.integer(v, w, 0, None)
        elif key == "rollup_interval_s":
            value = r.number(v, w, 0.1, None)
        elif key == "esl":
            value = _read_esl(r, v, w)
        elif key == "sms_gateway":  # docs/SMS.md
            from daemon.definition.integrations import read_sms_gateway
            value = read_sms_gateway(r, v, w)
        elif key == "http_users":
            value = _read_users(r, v, w)
        elif key == "http_session_minutes":
            value = r.integer(v, w, 1, 7 * 24 * 60)
        elif key in ("http_tls_cert", "http_tls_key"):
            value = None if v.is_null else r.text(v, w)
        else:
            value = r.text(v, w)
        if value is not _BAD:
            out[key] = value
    return out


def _read_esl(r: _Reader, node: YNode, what: str) -> Any:
    items = node.value if node.kind == "seq" else [node]
    parsed: list[_Parsed] = []
    for i, item in enumerate(items, 1):
        if item.kind == "scalar":
            text = r.secret(item, what)
            if text is _BAD:
                return _BAD
            got = _parse_esl_text(text, what)
            if isinstance(got, str):
                r.error(item.src, got)
                return _BAD
            parsed.extend(got)
            continue
        w = f"ESL node {i} of {what}"
        body = r.mapping(item, w, ("name", "host", "port", "password"), ("host",))
        if body is None or "host" not in body:
            return _BAD
        host = r.text(body["host"], f"'host' of {w}")
        if host is not _BAD and not valid_host(host):
            r.error(body["host"].src, f"'host' of {w} is not a host name or an IP address.")
            host = _BAD
        port = r.integer(body["port"], f"'port' of {w}", 1, 65535) if "port" in body else 8021
        password = r.secret(body["password"], f"'password' of {w}") \
            if "password" in body else "ClueCon"
        name = r.ident(body["name"], f"'name' of {w}") if "name" in body else None
        if _BAD in (host, port, password, name):
            return _BAD
        parsed.append((name, host, port, password))
    if not parsed:
        r.error(node.src, f"{what} names no ESL node.")
        return _BAD
    nodes = _name_nodes(parsed)
    names = [n.name for n in nodes]
    for n in nodes:
        if names.count(n.name) > 1:
            r.error(node.src, f"{what} names ESL node '{n.name}' twice.")
            return _BAD
    return nodes


WEB_ROLES = ("admin", "supervisor", "viewer")
SECRET_HASHES = ("scrypt$", "pbkdf2_sha256$")


def _read_users(r: _Reader, node: YNode, what: str) -> Any:
    """``http_users``: logins of the web console (docs/WEB.md); secrets hashed or ``${ENV}``."""
    if node.kind != "seq":
        r.error(node.src, f"{what} must be a list of users (name, secret, role, tenant).")
        return _BAD
    users: list[WebUser] = []
    for i, item in enumerate(node.value, 1):
        w = f"user {i} of {what}"
        body = r.mapping(item, w, ("name", "secret", "role", "tenant"), ("name", "secret"))
        if body is None or "name" not in body or "secret" not in body:
            return _BAD
        name = r.ident(body["name"], f"'name' of {w}")
        raw = body["secret"].value if body["secret"].kind == "scalar" else None
        secret = r.secret(body["secret"], f"'secret' of {w}")
        role = r.text(body["role"], f"'role' of {w}") if "role" in body else "viewer"
        tenant = r.ident(body["tenant"], f"'tenant' of {w}") if "tenant" in body else None
        if _BAD in (name, secret, role, tenant):
            return _BAD
        if role not in WEB_ROLES:
            r.error(body["role"].src, f"'role' of {w} is {role!r}; use one of "
                                      f"{', '.join(WEB_ROLES)}.")
            return _BAD
        if not str(secret).startswith(SECRET_HASHES) and "${" not in str(raw):
            # a plain secret in a file that gets copied, backed up and committed: refuse it
            r.error(body["secret"].src, f"'secret' of {w} is neither a hash (make one with "
                                        "`hotline web hash-secret`) nor a ${ENV} reference.")
            return _BAD
        if not secret:
            r.error(body["secret"].src, f"'secret' of {w} is empty.")
            return _BAD
        if any(u.name == name for u in users):
            r.error(body["name"].src, f"{what} names user '{name}' twice.")
            return _BAD
        users.append(WebUser(name, secret, role, tenant))
    return tuple(users)


def check_settings_nodes(nodes: Iterable[YNode], env: Mapping[str, str],
                         in_config_dir: bool) -> list[ConfigError]:
    """Errors of ``settings:`` blocks (``hotline validate`` reports them with the tenants)."""
    r = _Reader(env)
    _merge_blocks(r, list(nodes), in_config_dir)
    return r.errors


def _merge_blocks(r: _Reader, nodes: list[YNode], in_config_dir: bool) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    where: dict[str, YNode] = {}
    for node in nodes:
        values = _read_settings(r, node, in_config_dir)
        for key, value in values.items():
            if key in where:
                first = where[key].keys[key]
                r.error(node.keys[key], f"setting '{key}' is already given at "
                                        f"{first.file}:{first.line}.")
                continue
            where[key] = node
            merged[key] = value
    return merged


def _settings_file_layer(r: _Reader, path: Path) -> dict[str, Any]:
    try:
        tree, errors = load_yaml(path, str(path))
    except YamlFileError as exc:
        r.errors.append(exc.error)
        return {}
    r.errors.extend(errors)
    if tree is None:
        return {}
    if tree.kind == "map" and "settings" in tree.value:
        top = r.mapping(tree, f"the top level of {path.name}", ("settings",))
        block = (top or {}).get("settings")
        return {} if block is None else _merge_blocks(r, [block], in_config_dir=False)
    # a settings file may also be flat: the keys of the settings block at the top level
    return _merge_blocks(r, [tree], in_config_dir=False)


# a top-level "settings:" key starts a line (or the file is one flow mapping)
_MAY_HAVE_SETTINGS = re.compile(rb"""^(?:["']?settings["']?\s*:|\s*\{)""", re.MULTILINE)


def _config_dir_layer(r: _Reader, config_dir: str) -> dict[str, Any]:
    if not Path(config_dir).is_dir():
        return {}
    blocks: list[YNode] = []
    for file in config_files(config_dir):
        # only files that can hold a settings block are parsed: a large center would
        # otherwise be read twice by every command
        try:
            if file.stat().st_size > MAX_FILE_BYTES or \
                    not _MAY_HAVE_SETTINGS.search(file.read_bytes()):
                continue
            tree, _ = load_yaml(file, str(file))
        except (OSError, YamlFileError):
            continue  # file-level problems are load_center's to report
        if tree is not None and tree.kind == "map" and "settings" in tree.value:
            blocks.append(tree.value["settings"])
    return _merge_blocks(r, blocks, in_config_dir=True)


def _env_layer(r: _Reader, env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var, key in ENV_KEYS.items():
        if var not in env:
            continue
        value = env[var]
        if key == "esl":
            got = _parse_esl_text(value, "")  # the error's location already names ${var}
            if isinstance(got, str):
                r.errors.append(ConfigError(f"${var}", 0, 0, got))
                continue
            out[key] = _name_nodes(got)
        elif key == "redis_url":
            out[key] = value or None
        elif key == "http_listen":
            out[key] = value  # empty = no HTTP API
        elif value:
            out[key] = value
    return out


def load_settings(path: str | None = None, env: Mapping[str, str] = os.environ) -> Settings:
    """Settings from env, a settings file and the config directory over the defaults.

    Raises ``ConfigErrors`` (file:line:column and a sentence) when a layer is wrong.
    """
    r = _Reader(env)
    env_layer = _env_layer(r, env)
    file_path = path or env.get("HOTLINE_SETTINGS") or None
    file_layer: dict[str, Any] = {}
    if file_path:
        p = Path(file_path)
        if not p.is_file():
            r.errors.append(ConfigError(str(p), 0, 0, "the settings file does not exist."))
        else:
            file_layer = _settings_file_layer(r, p)
    defaults = {k: getattr(_DEFAULTS, k if k != "esl" else "esl_nodes") for k in SETTINGS_KEYS}
    config_dir = ChainMap(env_layer, file_layer, defaults)["config_dir"]
    dir_layer = _config_dir_layer(r, config_dir)
    if r.errors:
        raise ConfigErrors(r.errors)
    chain = ChainMap(env_layer, file_layer, dir_layer, defaults)
    values = {k: chain[k] for k in SETTINGS_KEYS}
    values["esl_nodes"] = values.pop("esl")
    settings = Settings(**values)
    logger.debug("settings: config %s, database %s, %d ESL nodes", settings.config_dir,
                 settings.database_url.split("@")[-1], len(settings.esl_nodes))
    return settings
