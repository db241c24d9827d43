"""deploy/butler-server: the example config and the chart's values are valid server configs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from rc2_platform.cli.server_commands import serve
from rc2_platform.server.config import ServerConfig, load_server_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "butler-server"


def test_example_server_config_is_valid() -> None:
    config = load_server_config(DEPLOY / "server.yaml")
    assert list(config.repositories) == ["rc2"]
    assert config.repositories["rc2"].anonymous_collections == []


def test_chart_values_hold_a_valid_server_config() -> None:
    values = yaml.safe_load((DEPLOY / "chart" / "values.yaml").read_text())
    config = ServerConfig.model_validate(values["serverConfig"])
    config = config.with_repository(
        values["repository"]["name"], Path(values["repository"]["path"])
    )
    assert config.signed_urls.key_file is not None  # replicas share the signing key
    assert values["replicaCount"] >= 1


def test_chart_runs_rc2_serve_with_options_it_has() -> None:
    text = (DEPLOY / "chart" / "templates" / "deployment.yaml").read_text()
    command = re.search(r"command: \[(.*?)\]", text, re.S)
    assert command is not None
    words = [w.strip().strip('"') for w in command.group(1).replace("\n", " ").split(",")]
    assert words[:2] == ["rc2", "serve"]
    known = {opt for p in serve.params for opt in getattr(p, "opts", [])}
    known |= {opt for p in serve.params for opt in getattr(p, "secondary_opts", [])}
    used = [w for w in words if w.startswith("--")]
    assert used and set(used) <= known
    assert "readOnly: true" in text and "/healthz" in text


def test_proxy_example_keeps_secrets_out_of_its_log() -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    log_format = re.search(r"log_format rc2 (.*?);", text, re.S)
    assert log_format is not None and "$request " not in log_format.group(1)
    assert "$uri" in log_format.group(1) and "$args" not in log_format.group(1)
    assert "access_log /var/log/nginx/rc2-butler.log rc2;" in text
