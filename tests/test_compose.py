"""docker/compose.yaml and its files hang together (compose itself cannot run here): the YAML
parses, every role is there twice and waits for what it needs, nginx gets every placeholder
of docker/nginx.conf, and Prometheus scrapes each role where it serves /metrics."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def load(name: str) -> Any:
    return yaml.safe_load((DOCKER / name).read_text())


def test_compose_runs_every_role_twice_behind_nginx_on_a_persistent_redis() -> None:
    services = load("compose.yaml")["services"]
    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "healthcheck" in redis

    for role in ("ingest", "worker", "delivery"):
        service = services[role]
        assert service["command"] == [role]
        assert service["deploy"]["replicas"] == 2
        assert service["env_file"] == "emostream.env"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["build"]["dockerfile"] == "docker/Dockerfile"

    nginx = services["nginx"]
    for upstream in ("ingest", "delivery"):
        assert nginx["depends_on"][upstream]["condition"] == "service_healthy"
    assert "healthcheck" in nginx
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", (DOCKER / "nginx.conf").read_text()))
    assert placeholders == set(nginx["environment"])
    assert nginx["environment"]["INGEST_UPSTREAM"] == "ingest:8000"
    assert any("nginx.conf:/etc/nginx/templates/" in volume for volume in nginx["volumes"])

    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["metrics"]
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_one_env_file_configures_every_role() -> None:
    lines = (DOCKER / "emostream.env").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert all(name.startswith("EMOSTREAM_") for name in settings)
    assert settings["EMOSTREAM_REDIS_URL"] == "redis://redis:6379/0"
    assert settings["EMOSTREAM_PORT"] == "8000"


def test_prometheus_scrapes_each_role_where_it_serves_metrics() -> None:
    jobs = {job["job_name"]: job for job in load("prometheus.yml")["scrape_configs"]}
    env = (DOCKER / "emostream.env").read_text()
    metrics_port = int(re.findall(r"^EMOSTREAM_METRICS_PORT=(\d+)$", env, re.M)[0])
    for role, port in (("ingest", 8000), ("delivery", 8000), ("worker", metrics_port)):
        (discovery,) = jobs[role]["dns_sd_configs"]
        assert discovery == {"names": [role], "type": "A", "port": port}
    assert load("grafana/datasources.yaml")["datasources"][0]["url"] == "http://prometheus:9090"
