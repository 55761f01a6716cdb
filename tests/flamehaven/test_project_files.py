"""Files that cannot run here (Docker) or that people read (.env.example), checked."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _names_read_by(path: Path, pattern: str) -> set[str]:
    return set(re.findall(pattern, path.read_text(), flags=re.S))


def test_env_example_lists_every_setting_and_nothing_else():
    read = _names_read_by(
        ROOT / "flamehaven/settings.py", r'env\.\w+\(\s*"([A-Z_]+)"'
    ) | _names_read_by(
        ROOT / "deploy/gunicorn.conf.py", r"environ\.get\(\s*['\"]([A-Z_]+)['\"]"
    )
    listed = set(
        re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), flags=re.M)
    )

    assert read - listed == set(), "settings missing from .env.example"
    assert listed - read == set(), ".env.example lists settings nobody reads"


def test_docker_compose_wires_postgres_and_redis():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())

    web = compose["services"]["web"]
    assert set(compose["services"]) == {"web", "db", "redis"}
    assert web["environment"]["DATABASE_URL"].startswith("postgres://")
    assert web["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert web["environment"]["ENVIRONMENT"] == "production"


def test_dockerfile_copies_what_exists_and_runs_gunicorn():
    dockerfile = (ROOT / "Dockerfile").read_text()

    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M):
        for name in source.split():
            assert (ROOT / name).exists(), name
    assert "gunicorn -c deploy/gunicorn.conf.py" in dockerfile
    assert "collectstatic" in dockerfile


def _settings_in_production(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "flamehaven.settings",
            "ENVIRONMENT": "production",
            **env,
        },
        capture_output=True,
        text=True,
    )


def test_production_refuses_the_development_secret_key():
    result = _settings_in_production(
        SECRET_KEY="django-insecure-development-key-change-me",
        ALLOWED_HOSTS="example.com",
    )

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts():
    result = _settings_in_production(SECRET_KEY="x" * 50, ALLOWED_HOSTS="")

    assert result.returncode != 0
    assert "ALLOWED_HOSTS" in result.stderr


def test_production_starts_with_real_settings():
    result = _settings_in_production(SECRET_KEY="x" * 50, ALLOWED_HOSTS="example.com")

    assert result.returncode == 0, result.stderr


def test_the_deploy_checks_pass_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "flamehaven.settings",
            "ENVIRONMENT": "production",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "search.example.com",
        },
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("RATE_LIMIT_SEARCH", "lots", "search rate limit 'lots'"),
        ("RATE_LIMIT_UPLOAD_SINGLE", "10/minute", "upload-single rate limit"),
        (
            "TRUSTED_PROXIES",
            "10.0.0.0/8, proxy.example.com",
            "TRUSTED_PROXIES='10.0.0.0/8, proxy.example.com': give a count",
        ),
    ],
)
def test_a_malformed_setting_stops_the_start(setting, value, message):
    result = _settings_in_production(
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="example.com",
        **{setting: value},
    )

    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-500:]
