"""What a fresh machine or an image build installs and runs, checked as far as a machine without a Docker
engine allows: requirements.lock covers pyproject and is what this environment runs; the Makefile and
the Dockerfile install through it; the compose file's services, healthchecks, pinned images and settings
hold together (and `docker compose config` accepts it where the compose plugin exists)."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from sqlalchemy import create_engine, text

from registry.settings import Settings
from tests.conftest import PG_URL, pg_unreachable

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _lock() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _direct_requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [Requirement(r) for r in extra]
    return [r for r in reqs if canonicalize_name(r.name) != canonicalize_name(project["name"])]


def test_lock_pins_every_requirement_of_pyproject() -> None:
    pins = _lock()
    problems = []
    for req in _direct_requirements():
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req} is not in requirements.lock")
        elif not req.specifier.contains(pin, prereleases=True):
            problems.append(f"{req} does not admit the locked {pin}")
    assert not problems, "run `make lock`: " + "; ".join(problems)


def test_this_environment_runs_the_locked_versions() -> None:
    """CI installs with `make install` (pip constraints = the lock): every locked package present here
    has exactly the locked version (a local label such as +cpu aside)."""
    pins = _lock()
    drift = []
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in pins and Version(Version(dist.version).public) != pins[name]:
            drift.append(f"{name} {dist.version} (locked {pins[name]})")
    assert not drift, "installed versions differ from requirements.lock (run `make install`): " + ", ".join(
        sorted(drift)
    )


def test_makefile_installs_through_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^LOCK := requirements\.lock$", makefile, re.M)
    recipe = makefile.split("$(STAMP):", 1)[1].split("\ninstall:", 1)[0]
    assert "$(LOCK)" in recipe.splitlines()[0], "the install stamp must depend on the lock"
    torch_at = recipe.index("torch==2.13.0")
    package_at = recipe.index('-c $(LOCK) -e ".[dev]"')
    assert torch_at < package_at, "CPU torch must be installed before the package"
    assert "make install" in (ROOT / ".ci" / "run").read_text()


def _dockerfile() -> list[tuple[str, str]]:
    text_ = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text_.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, rest = line.partition(" ")
            out.append((instr.upper(), rest.strip()))
    return out


def _dockerignored(path: str) -> bool:
    patterns = [
        p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and p[0] != "#"
    ]
    return any(Path(path).match(p) or path == p or path.startswith(p.rstrip("/") + "/") for p in patterns)


def test_dockerfile_installs_the_locked_set() -> None:
    steps = _dockerfile()
    base = next(rest for instr, rest in steps if instr == "FROM")
    m = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-\w+", base)
    assert m, f"base image {base!r} is not pinned to a patch release"
    requires = PYPROJECT["project"]["requires-python"]
    assert Version(".".join(m.groups())) in Requirement(f"python{requires}").specifier

    copied: list[str] = []
    runs: list[str] = []
    order: list[str] = []
    for instr, rest in steps:
        if instr == "COPY":
            *sources, _dest = rest.split()
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
                assert not _dockerignored(src), f"COPY {src}: excluded by .dockerignore"
            copied += sources
            order += [f"copy:{s}" for s in sources]
        elif instr == "RUN":
            runs.append(rest)
            order.append(f"run:{rest}")
    torch_step = next(i for i, s in enumerate(order) if "torch==2.13.0" in s)
    lock_copy = order.index("copy:requirements.lock")
    install = next(i for i, s in enumerate(order) if "-c requirements.lock" in s and "pip install" in s)
    assert torch_step < install and lock_copy < install
    for run in runs:
        for cmd in (c.strip() for c in run.split("&&")):
            if cmd.startswith("pip install"):
                allowed = cmd.startswith(('pip install "pip==', "pip install torch==2.13.0 "))
                assert allowed or "-c requirements.lock" in cmd, f"installs outside the lock: {cmd}"
    for pkg in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        top = pkg.rstrip("*")
        if (ROOT / top).is_dir():
            assert top in copied, f"package {top} is not copied into the image"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _tag(image: str) -> str:
    assert ":" in image and "@" not in image, f"image {image!r} has no tag"
    return image.rsplit(":", 1)[1]


def test_compose_services_images_and_healthchecks() -> None:
    compose = _compose()
    services: dict[str, Any] = compose["services"]
    assert {"postgres", "qdrant", "migrate", "api", "lb"} <= set(services)
    built = {svc["image"] for svc in services.values() if "build" in svc and "image" in svc}
    for name, svc in services.items():
        if "image" in svc and svc["image"] not in built:
            tag = _tag(svc["image"])
            assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: image {svc['image']} not pinned"
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src.startswith("."):
                assert (ROOT / src).exists(), f"{name}: bind mount {src} does not exist"
            else:
                assert src in compose.get("volumes", {}), f"{name}: volume {src} is not declared"
    for name in ["postgres", "qdrant", "lb"]:
        assert services[name]["healthcheck"]["test"], name
    # the API's healthcheck is the image's own (Dockerfile HEALTHCHECK on /readyz)
    assert any(instr == "HEALTHCHECK" and "/readyz" in rest for instr, rest in _dockerfile())
    api = services["api"]
    assert api["deploy"]["replicas"] >= 2, "the production shape runs several API replicas"
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["locus-registry", "db", "upgrade"]
    assert "db" not in " ".join(api["command"]), "replicas must not migrate concurrently"


def test_compose_settings_are_real_settings() -> None:
    known = {f"LOCUS_{name.upper()}" for name in Settings.model_fields}
    for name, svc in _compose()["services"].items():
        env = svc.get("environment", {})
        unknown = sorted(k for k in env if k.startswith("LOCUS_") and k not in known)
        assert not unknown, f"{name}: unknown settings {unknown}"
        env_settings = {k[len("LOCUS_") :].lower(): v for k, v in env.items() if k.startswith("LOCUS_")}
        Settings(**env_settings)  # every value parses


def test_qdrant_image_matches_the_locked_client() -> None:
    server = Version(_tag(_compose()["services"]["qdrant"]["image"]).lstrip("v"))
    client = _lock()["qdrant-client"]
    assert (server.major, server.minor) == (client.major, client.minor), (server, client)


def test_postgres_image_is_the_major_release_ci_tests() -> None:
    image = Version(_tag(_compose()["services"]["postgres"]["image"]).split("-")[0])
    reason = pg_unreachable()
    if reason:
        if os.environ.get("LOCUS_TEST_REQUIRE_PG"):
            pytest.fail(reason)
        pytest.skip(reason)
    engine = create_engine(PG_URL)
    with engine.connect() as conn:
        tested = Version(str(conn.execute(text("SHOW server_version")).scalar()).split()[0])
    engine.dispose()
    assert image.major == tested.major, f"compose runs PostgreSQL {image}, the tests ran on {tested}"


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True) if docker else None
    if probe is None or probe.returncode != 0:
        pytest.skip("no docker compose plugin on this machine (the file is checked structurally above)")
    done = subprocess.run([docker, "compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
