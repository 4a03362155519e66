"""The deployment files agree with each other and with pyproject.toml.

docker/ (the image, the compose stack), cluster/aws.yaml (Ray cluster launcher) and cluster/kuberay/
(RayCluster, RayJob) cannot be run here, so these tests read them and check what must match: one
image name and tag, the Ray and MLflow versions, the ports, token authentication on every Ray node,
MLflow's built-in authentication with its credentials from secrets (the server's and the Ray head's),
no credentials in files or in a job's runtime environment, host ports bound to localhost, and the
bucket MLflow writes to exists. The two scripts the images run to read secret files are run here.
Fast and offline: no Docker, no Kubernetes, no network.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import stat
import subprocess
import sys
import tempfile
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
CLUSTER = ROOT / "cluster"
COMPOSE = DOCKER / "compose.yaml"
WORKER_DOCKERFILE = DOCKER / "Dockerfile"
MLFLOW_DOCKERFILE = DOCKER / "mlflow.Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"
AWS = CLUSTER / "aws.yaml"
KUBERAY = CLUSTER / "kuberay"
RAYCLUSTER = KUBERAY / "raycluster.yaml"
RAYJOB = KUBERAY / "rayjob.yaml"
MLFLOW_K8S = CLUSTER / "mlflow" / "kubernetes.yaml"
LOCAL_SPEC = DOCKER / "local-smoke.yaml"
MLFLOW_AUTH_SCRIPT = DOCKER / "mlflow-auth.py"
ENV_FROM_FILES = DOCKER / "env-from-files.sh"
MLFLOW_SECRETS_SCRIPT = DOCKER / "mlflow-secrets.sh"

# The well-known Ray and MLflow ports the README, the CLI defaults and these files use.
GCS_PORT, DASHBOARD_PORT, MLFLOW_PORT = 6379, 8265, 5000


# ---------------------------------------------------------------------------------------------
# readers


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def requirement(name: str) -> SpecifierSet:
    """The version specifier pyproject.toml gives a dependency, e.g. ray -> ==2.60.*."""
    for line in pyproject()["project"]["dependencies"]:
        match = re.fullmatch(rf"{re.escape(name)}(\[[^\]]*\])?\s*(?P<spec>[<>=!~].*)", line.strip())
        if match:
            return SpecifierSet(match["spec"])
    raise AssertionError(f"pyproject.toml has no dependency {name!r}")


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all_yaml(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comment lines dropped."""
    instructions, current = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        instructions.append((word.upper(), rest.strip()))
        current = ""
    return instructions


def dockerfile_args(path: Path) -> dict[str, str]:
    """ARG defaults (global and stage): NAME -> value ('' when none)."""
    args = {}
    for word, rest in dockerfile(path):
        if word == "ARG":
            name, _, value = rest.partition("=")
            args[name.strip()] = value.strip().strip('"')
    return args


def dockerfile_labels(path: Path) -> dict[str, str]:
    labels = {}
    for word, rest in dockerfile(path):
        if word == "LABEL":
            labels.update(re.findall(r'([\w.\-]+)="([^"]*)"', rest))
    return labels


def expand(text: str, variables: dict[str, str]) -> str:
    """${NAME} and $NAME from `variables` (Dockerfile ARGs)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m[1] or m[2]], text)


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<default>(?:[^{}]|\{[^{}]*\})*))?\}")


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, nested
    defaults, and $$ for a literal $. Unset variables without a default are an error."""
    env = env or {}
    text = text.replace("$$", "\0")

    def one(match: re.Match) -> str:
        name, op, default = match["name"], match["op"], match["default"]
        value = env.get(name)
        if op == ":-" and not value or op == "-" and value is None:
            return interpolate(default, env)
        if value is None or op == ":?" and not value:
            raise AssertionError(f"${{{name}}} has no value and no default in {COMPOSE.name}")
        return value

    previous = None
    while previous != text:
        previous, text = text, _VARIABLE.sub(one, text)
    return text.replace("\0", "$")


def command_text(command) -> str:
    """A compose command or entrypoint (string or list) as one string."""
    if command is None:
        return ""
    return command if isinstance(command, str) else " ".join(str(part) for part in command)


def option(command: str, name: str) -> str | None:
    """The value of --name=value or --name value in a command line."""
    match = re.search(rf"{re.escape(name)}(?:=|\s+)(\S+)", command)
    return match[1] if match else None


def image_name_tag(ref: str) -> tuple[str, str]:
    """('sweeper-worker', '0.1.0') from [registry/][path/]sweeper-worker:0.1.0."""
    assert "@" not in ref, f"{ref}: use a tag, not a digest, so the files can be compared"
    path, _, tag = ref.rpartition(":")
    assert path and "/" not in tag, f"{ref}: no tag"
    return path.rsplit("/", 1)[-1], tag


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def ray_services(services) -> dict[str, dict]:
    """Compose services that run a Ray node (their command runs `ray start`)."""
    nodes = {name: svc for name, svc in services.items() if "ray start" in command_text(svc.get("command"))}
    assert nodes, "no compose service runs `ray start`"
    return nodes


@pytest.fixture(scope="module")
def aws() -> dict:
    return load_yaml(AWS)


@pytest.fixture(scope="module")
def kuberay_docs() -> dict[str, list[dict]]:
    return {path.name: load_all_yaml(path) for path in (RAYCLUSTER, RAYJOB)}


def ray_cluster_specs(kuberay_docs) -> list[tuple[str, dict]]:
    """(label, RayCluster spec) for the RayCluster and the RayJob's rayClusterSpec."""
    specs = []
    for file, docs in kuberay_docs.items():
        for doc in docs:
            if doc.get("kind") == "RayCluster":
                specs.append((f"{file}:RayCluster", doc["spec"]))
            elif doc.get("kind") == "RayJob":
                specs.append((f"{file}:RayJob", doc["spec"]["rayClusterSpec"]))
    return specs


def ray_groups(spec: dict) -> list[tuple[str, dict]]:
    """(group, pod template spec) for the head group and every worker group."""
    groups = [("head", spec["headGroupSpec"]["template"]["spec"])]
    groups += [(group["groupName"], group["template"]["spec"]) for group in spec["workerGroupSpecs"]]
    return groups


def ray_containers(kuberay_docs) -> list[tuple[str, dict, dict]]:
    """(label, cluster spec, Ray container) for every Ray node type; KubeRay runs Ray in containers[0]."""
    found = []
    for label, spec in ray_cluster_specs(kuberay_docs):
        for group, pod in ray_groups(spec):
            found.append((f"{label}:{group}", spec, pod["containers"][0]))
    return found


def env_of(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def aws_start_commands(aws) -> list[str]:
    commands = aws.get("head_start_ray_commands", []) + aws.get("worker_start_ray_commands", [])
    return [command for command in commands if "ray start" in command]


def aws_container_env(aws) -> dict[str, str]:
    env = {}
    for run_option in aws["docker"].get("run_options", []):
        parts = shlex.split(run_option)
        for flag, value in zip(parts, parts[1:]):
            if flag in ("--env", "-e"):
                key, _, val = value.partition("=")
                env[key] = val
    return env


# ---------------------------------------------------------------------------------------------
# every file parses


DEPLOY_YAML = sorted({*DOCKER.rglob("*.yaml"), *DOCKER.rglob("*.yml"), *CLUSTER.rglob("*.yaml"), *CLUSTER.rglob("*.yml")})


def test_deploy_files_exist():
    for path in (WORKER_DOCKERFILE, MLFLOW_DOCKERFILE, COMPOSE, ENV_EXAMPLE, AWS, RAYCLUSTER, RAYJOB,
                 MLFLOW_K8S, MLFLOW_AUTH_SCRIPT, ENV_FROM_FILES, MLFLOW_SECRETS_SCRIPT, CLUSTER / "README.md"):
        assert path.is_file(), f"missing {path.relative_to(ROOT)}"


@pytest.mark.parametrize("path", DEPLOY_YAML, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path):
    docs = load_all_yaml(path)
    assert docs and all(isinstance(doc, dict) for doc in docs), f"{path}: expected YAML mappings"


def test_kuberay_manifests_are_ray_io_v1(kuberay_docs):
    kinds = {}
    for file, docs in kuberay_docs.items():
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{file}: not a Kubernetes object"
            kinds.setdefault(file, []).append(doc["kind"])
            if doc["kind"] in ("RayCluster", "RayJob"):
                assert doc["apiVersion"] == "ray.io/v1", f"{file}: {doc['kind']} must be ray.io/v1"
    assert kinds[RAYCLUSTER.name] == ["RayCluster"]
    assert sorted(kinds[RAYJOB.name]) == ["ConfigMap", "RayJob"]


# ---------------------------------------------------------------------------------------------
# the images


def test_worker_image_python_and_torch():
    args = dockerfile_args(WORKER_DOCKERFILE)
    base = expand(next(rest for word, rest in dockerfile(WORKER_DOCKERFILE) if word == "FROM"), args)
    match = re.fullmatch(r"python:(\d+\.\d+)[-\w.]*", base.split()[0])
    assert match, f"docker/Dockerfile: expected an official python base image, got {base}"
    python = Version(match[1])
    assert python == Version("3.11"), f"the image should run Python 3.11, FROM gives {python}"
    assert python in SpecifierSet(pyproject()["project"]["requires-python"])
    assert Version(args["TORCH_VERSION"]) in requirement("torch"), (
        f"TORCH_VERSION={args['TORCH_VERSION']} is outside pyproject's torch{requirement('torch')}")


def test_worker_image_installs_the_package():
    instructions = dockerfile(WORKER_DOCKERFILE)
    copied = " ".join(rest for word, rest in instructions if word in ("COPY", "ADD")).split()
    for needed in ("pyproject.toml", "README.md", "src/"):
        assert needed in copied, f"docker/Dockerfile does not COPY {needed}"
    installs = [shlex.split(rest.split("&&")[0]) for word, rest in instructions
                if word == "RUN" and "pip install" in rest and "." in shlex.split(rest.split("&&")[0])]
    assert installs, "docker/Dockerfile never runs `pip install .`"


def test_worker_image_pins_agree_with_pyproject():
    args = dockerfile_args(WORKER_DOCKERFILE)
    assert Version(args["RAY_VERSION"]) in requirement("ray"), (
        f"docker/Dockerfile RAY_VERSION={args['RAY_VERSION']} vs pyproject ray{requirement('ray')}")
    assert Version(args["MLFLOW_VERSION"]) in requirement("mlflow")
    install = next(rest for word, rest in dockerfile(WORKER_DOCKERFILE) if word == "RUN" and "ray[" in rest)
    assert '"ray[tune,default]==${RAY_VERSION}"' in install, "the image must install Ray at RAY_VERSION"
    assert '"mlflow==${MLFLOW_VERSION}"' in install, "the image must install MLflow at MLFLOW_VERSION"


def test_prebuild_step_calls_a_real_function():
    """The image builds the embedded backbone with a function that exists in src/."""
    for word, rest in dockerfile(WORKER_DOCKERFILE):
        for module, name in re.findall(r"from (sweeper[\w.]*) import (\w+)", rest):
            source = ROOT / "src" / (module.replace(".", "/") + ".py")
            assert source.is_file(), f"docker/Dockerfile imports {module}, which src/ lacks"
            defined = {node.name for node in ast.parse(source.read_text(encoding="utf-8")).body
                       if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
            assert name in defined, f"docker/Dockerfile calls {module}.{name}, which is not defined"


def test_mlflow_image_version_and_drivers(services):
    args = dockerfile_args(MLFLOW_DOCKERFILE)
    version = args["MLFLOW_VERSION"]
    assert Version(version) in requirement("mlflow"), f"mlflow.Dockerfile MLFLOW_VERSION={version} vs pyproject"
    assert version == dockerfile_args(WORKER_DOCKERFILE)["MLFLOW_VERSION"], "MLflow server and clients differ"
    install = " ".join(rest for word, rest in dockerfile(MLFLOW_DOCKERFILE) if word == "RUN" and "pip install" in rest)
    for package in ('"mlflow[auth]==${MLFLOW_VERSION}"', "psycopg2-binary", "boto3"):
        assert package in install, f"mlflow.Dockerfile does not install {package}"
    mlflow = services["mlflow"]
    assert (ROOT / "docker" / mlflow["build"]["context"] / mlflow["build"]["dockerfile"]).resolve() == MLFLOW_DOCKERFILE
    assert image_name_tag(mlflow["image"])[1] == version, "compose tags the MLflow image with another version"


def test_no_secrets_in_dockerfiles():
    for path in (WORKER_DOCKERFILE, MLFLOW_DOCKERFILE):
        for word, rest in dockerfile(path):
            if word in ("ENV", "ARG"):
                assert not re.search(r"AWS_SECRET|AWS_ACCESS_KEY|AWS_SESSION|RAY_AUTH_TOKEN|PASSWORD", rest), (
                    f"{path.name}: {word} {rest} bakes a credential into the image")


def test_one_image_everywhere(services, ray_services, aws, kuberay_docs):
    refs = {f"compose:{name}": svc["image"] for name, svc in ray_services.items()}
    refs["aws:docker.image"] = aws["docker"]["image"]
    for key in ("head_image", "worker_image"):
        if key in aws["docker"]:
            refs[f"aws:docker.{key}"] = aws["docker"][key]
    for node_type, node in aws["available_node_types"].items():
        for key in ("image", "head_image", "worker_image"):
            if key in node.get("docker", {}):
                refs[f"aws:{node_type}.{key}"] = node["docker"][key]
    for label, _, container in ray_containers(kuberay_docs):
        refs[label] = container["image"]

    names = {label: image_name_tag(ref) for label, ref in refs.items()}
    assert len(set(names.values())) == 1, f"Ray nodes run different images: {refs}"
    name, tag = next(iter(names.values()))

    labels = dockerfile_labels(WORKER_DOCKERFILE)
    assert name == labels["org.opencontainers.image.title"], "docker/Dockerfile's title label names another image"
    assert tag == labels["org.opencontainers.image.version"] == pyproject()["project"]["version"], (
        f"image tag {tag} vs Dockerfile label vs pyproject version {pyproject()['project']['version']}")

    remote = {ref for label, ref in refs.items() if not label.startswith("compose:")}
    assert len(remote) == 1, f"AWS and KubeRay pull different references: {remote}"

    for service_name, svc in ray_services.items():
        build = svc.get("build")
        assert build, f"compose {service_name} has no build: `docker compose up --build` must make the image"
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == WORKER_DOCKERFILE


# ---------------------------------------------------------------------------------------------
# versions


def test_ray_version_agrees(kuberay_docs):
    image_ray = dockerfile_args(WORKER_DOCKERFILE)["RAY_VERSION"]
    assert Version(image_ray) in requirement("ray")
    specs = ray_cluster_specs(kuberay_docs)
    assert len(specs) == 2
    for label, spec in specs:
        assert str(spec["rayVersion"]) == image_ray, f"{label}: rayVersion {spec['rayVersion']} vs image Ray {image_ray}"
        assert Version(str(spec["rayVersion"])) in requirement("ray")


# ---------------------------------------------------------------------------------------------
# ports


def cli_dashboard_port() -> int:
    """The dashboard port in `sweeper submit`'s default --address (without RAY_API_SERVER_ADDRESS set)."""
    import os

    from sweeper.cli import parser

    saved = os.environ.pop("RAY_API_SERVER_ADDRESS", None)
    try:
        address = parser().parse_args(["status", "some-job"]).address
    finally:
        if saved is not None:
            os.environ["RAY_API_SERVER_ADDRESS"] = saved
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", address)
    assert match, f"the CLI's default --address is {address}"
    return int(match[1])


def test_compose_ports(services, ray_services):
    assert cli_dashboard_port() == DASHBOARD_PORT
    heads = [name for name, svc in ray_services.items() if "--head" in command_text(svc["command"])]
    assert len(heads) == 1, f"expected one Ray head in compose, got {heads}"
    head = heads[0]
    head_cmd = interpolate(command_text(services[head]["command"]))
    gcs = int(option(head_cmd, "--port"))
    dashboard = int(option(head_cmd, "--dashboard-port"))
    assert (gcs, dashboard) == (GCS_PORT, DASHBOARD_PORT)
    assert option(head_cmd, "--dashboard-host") == "0.0.0.0", "the dashboard must listen beyond the container"
    assert f"127.0.0.1:{dashboard}:{dashboard}" in services[head]["ports"]

    workers = [name for name in ray_services if name != head]
    assert sorted(workers) == ["ray-worker-1", "ray-worker-2"]
    for name in workers:
        cmd = interpolate(command_text(services[name]["command"]))
        assert option(cmd, "--address") == f"{head}:{gcs}", f"{name} joins {option(cmd, '--address')}"
        assert option(cmd, "--num-cpus"), f"{name} should set its own --num-cpus"
        assert "--block" in cmd, f"{name}: without --block the container exits"

    mlflow_cmd = interpolate(command_text(services["mlflow"]["command"]))
    mlflow_port = int(option(mlflow_cmd, "--port"))
    assert mlflow_port == MLFLOW_PORT
    assert option(mlflow_cmd, "--host") == "0.0.0.0"
    assert f"127.0.0.1:{mlflow_port}:{mlflow_port}" in services["mlflow"]["ports"]
    for name, svc in ray_services.items():
        uri = urlparse(svc["environment"]["MLFLOW_TRACKING_URI"])
        assert uri.hostname in services, f"{name}: MLflow host {uri.hostname} is not a compose service"
        assert uri.port == mlflow_port, f"{name}: MLFLOW_TRACKING_URI port {uri.port} vs server {mlflow_port}"


def test_aws_ports(aws):
    head_cmd = next(c for c in aws["head_start_ray_commands"] if "ray start" in c)
    worker_cmd = next(c for c in aws["worker_start_ray_commands"] if "ray start" in c)
    assert int(option(head_cmd, "--port")) == GCS_PORT
    assert int(option(head_cmd, "--dashboard-port")) == DASHBOARD_PORT
    assert option(worker_cmd, "--address") == f"$RAY_HEAD_IP:{GCS_PORT}"
    assert urlparse(aws_container_env(aws)["MLFLOW_TRACKING_URI"]).port == MLFLOW_PORT


def test_kuberay_ports(kuberay_docs):
    for label, spec in ray_cluster_specs(kuberay_docs):
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        ports = {port["name"]: port["containerPort"] for port in head.get("ports", [])}
        assert ports.get("gcs-server") == GCS_PORT, f"{label}: gcs-server port {ports.get('gcs-server')}"
        assert ports.get("dashboard") == DASHBOARD_PORT, f"{label}: dashboard port {ports.get('dashboard')}"
        params = spec["headGroupSpec"].get("rayStartParams", {})
        assert int(params.get("port", GCS_PORT)) == GCS_PORT
        assert int(params.get("dashboard-port", DASHBOARD_PORT)) == DASHBOARD_PORT
    for label, _, container in ray_containers(kuberay_docs):
        uri = env_of(container)["MLFLOW_TRACKING_URI"]["value"]
        assert urlparse(uri).port == MLFLOW_PORT, f"{label}: MLFLOW_TRACKING_URI {uri}"


# ---------------------------------------------------------------------------------------------
# Ray token authentication on every node


def test_compose_token_auth(compose, ray_services):
    for name, svc in ray_services.items():
        env = svc.get("environment", {})
        assert isinstance(env, dict), f"{name}: write environment as a mapping"
        assert env.get("RAY_AUTH_MODE") == "token", f"compose {name} runs Ray without RAY_AUTH_MODE=token"
        assert "RAY_AUTH_TOKEN" not in env or env["RAY_AUTH_TOKEN"].startswith("${"), f"{name}: literal token"
        path = env.get("RAY_AUTH_TOKEN_PATH")
        assert path or "RAY_AUTH_TOKEN" in env, f"compose {name} has no Ray token"
        if path and path.startswith("/run/secrets/"):
            secret = path.removeprefix("/run/secrets/")
            mounted = [s if isinstance(s, str) else s.get("source") for s in svc.get("secrets", [])]
            assert secret in mounted, f"compose {name} reads secret {secret} but does not mount it"
            assert "file" in compose["secrets"][secret] or "environment" in compose["secrets"][secret]
    for name, secret in compose.get("secrets", {}).items():
        if "file" in secret:
            source = interpolate(secret["file"], {"HOME": "/home/someone"})
            assert not (DOCKER / source).resolve().is_relative_to(ROOT), (
                f"compose secret {name} reads {source} inside the repository: keep tokens out of it")


def test_aws_token_auth(aws):
    commands = aws_start_commands(aws)
    assert len(commands) == 2, "expected one head and one worker `ray start`"
    mounts = aws.get("file_mounts", {})
    for command in commands:
        assert re.search(r"\bRAY_AUTH_MODE=token\b", command), f"aws start command without RAY_AUTH_MODE=token: {command}"
        path = re.search(r"\bRAY_AUTH_TOKEN_PATH=(\S+?);?(?:\s|$)", command)
        assert path, f"aws start command without RAY_AUTH_TOKEN_PATH: {command}"
        assert path[1] in mounts, f"{path[1]} is not copied to the nodes by file_mounts"
    env = aws_container_env(aws)
    assert env.get("RAY_AUTH_MODE") == "token", "docker.run_options should set RAY_AUTH_MODE=token for all Ray processes"
    assert env.get("RAY_AUTH_TOKEN_PATH") in mounts
    assert "RAY_AUTH_TOKEN" not in env, "the token itself must not be in cluster/aws.yaml"
    for remote, local in mounts.items():
        if "token" in remote:
            assert local.startswith("~"), f"file_mounts {remote}: take the token from the user's home, not the repo"


def test_kuberay_token_auth(kuberay_docs):
    for label, spec in ray_cluster_specs(kuberay_docs):
        auth = spec.get("authOptions", {})
        assert auth.get("mode") == "token", f"{label}: authOptions.mode must be token"
    for label, spec, container in ray_containers(kuberay_docs):
        env = env_of(container)
        assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", f"{label}: RAY_AUTH_MODE is not token"
        ref = env.get("RAY_AUTH_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef")
        assert ref, f"{label}: RAY_AUTH_TOKEN must come from a Secret"
        assert ref["key"] == "auth_token", "KubeRay's token Secrets keep the token under auth_token"
        secret_name = spec["authOptions"].get("secretName")
        assert secret_name and ref["name"] == secret_name, (
            f"{label}: RAY_AUTH_TOKEN from {ref['name']}, authOptions.secretName {secret_name}")


# ---------------------------------------------------------------------------------------------
# no credentials in files


AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
SECRET_VALUE = re.compile(r"(?i)secret[\w.\-]*[\"']?\s*[:=]\s*[\"']?(?P<value>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])")
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def credential_findings(text: str) -> list[str]:
    found = [m[0] for m in AWS_KEY_ID.finditer(text)]
    found += [m[0] for m in SECRET_VALUE.finditer(text)]
    found += [m[0] for m in PRIVATE_KEY.finditer(text)]
    return found


def test_credential_scanner_catches_real_looking_keys():
    fake_secret = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
    assert credential_findings(f"AWS_SECRET_ACCESS_KEY={fake_secret}\n")
    assert credential_findings(f'  aws_secret_access_key: "{fake_secret}"\n')
    assert credential_findings("AWS_ACCESS_KEY_ID=" + "AKIA" + "IOSFODNN7EXAMPLE")
    assert not credential_findings("AWS_SECRET_ACCESS_KEY: ${MINIO_ROOT_PASSWORD:-minioadmin}")


DEPLOY_FILES = sorted({p for p in [*DOCKER.rglob("*"), *CLUSTER.rglob("*")] if p.is_file()})


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_credentials_in_files(path):
    if path.name == ".env":
        pytest.skip("docker/.env is the user's local, git-ignored settings")
    findings = credential_findings(path.read_text(encoding="utf-8", errors="replace"))
    assert not findings, f"{path.relative_to(ROOT)} contains what looks like a credential: {findings}"


CREDENTIAL_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "RAY_AUTH_TOKEN",
                  "MLFLOW_TRACKING_PASSWORD"}


def test_kuberay_credentials_come_from_secrets(kuberay_docs):
    for file, docs in kuberay_docs.items():
        assert not [d for d in docs if d.get("kind") == "Secret"], f"{file}: create Secrets with kubectl, not in git"

    def containers(node):
        if isinstance(node, dict):
            if "image" in node and "name" in node:
                yield node
            for value in node.values():
                yield from containers(value)
        elif isinstance(node, list):
            for value in node:
                yield from containers(value)

    checked = 0
    for file, docs in kuberay_docs.items():
        for container in containers(docs):
            for name, item in env_of(container).items():
                if name in CREDENTIAL_ENV:
                    assert "value" not in item and item.get("valueFrom", {}).get("secretKeyRef"), (
                        f"{file}: {container['name']} sets {name} without a secretKeyRef")
                    checked += 1
    assert checked >= 3 * 4, "expected AWS keys and the Ray token from Secrets on every Ray container"
    for label, _, container in ray_containers(kuberay_docs):
        env = env_of(container)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env.get(name, {}).get("valueFrom", {}).get("secretKeyRef"), f"{label}: {name} not from a Secret"


def test_aws_uses_an_instance_profile(aws):
    assert not credential_findings(AWS.read_text(encoding="utf-8"))
    assert not CREDENTIAL_ENV & set(aws_container_env(aws)), "no credentials in the launcher's container env"
    for node_type, node in aws["available_node_types"].items():
        assert node["node_config"].get("IamInstanceProfile"), f"{node_type}: S3 access comes from an instance profile"


def test_compose_credentials_come_from_env_file(services):
    """Credentials in compose are ${VAR:-local default}; the defaults are the documented .env.example ones."""
    documented = env_file(ENV_EXAMPLE)
    assert "LOCAL-ONLY" in ENV_EXAMPLE.read_text(encoding="utf-8"), ".env.example must say its values are local-only"
    gitignore = (DOCKER / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in gitignore, "docker/.env must be git-ignored"
    seen = 0
    for name, svc in services.items():
        env = svc.get("environment") or {}
        for key, value in env.items():
            if key.endswith("_FILE"):  # a path to a secret file: checked by test_compose_secret_files_are_mounted
                continue
            if re.search(r"SECRET|PASSWORD|ACCESS_KEY|TOKEN$", key):
                match = re.fullmatch(r"\$\{(\w+)(?::-(.*))?\}", str(value))
                assert match, f"compose {name}: {key} must come from docker/.env (${{VAR:-default}}), not a literal"
                variable, default = match[1], match[2]
                assert variable in documented, f"compose {name}: {variable} is not documented in .env.example"
                if default is not None:
                    assert default == documented[variable], (
                        f"compose default for {variable} ({default}) differs from .env.example ({documented[variable]})")
                seen += 1
    assert seen, "no credentials found in compose: the test is not looking where it should"


# ---------------------------------------------------------------------------------------------
# compose: localhost ports, health, the bucket


def test_compose_host_ports_are_localhost(services):
    published = 0
    for name, svc in services.items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"compose {name}: {port} is not bound to 127.0.0.1"
            else:
                assert str(port).startswith("127.0.0.1:"), f"compose {name}: {port} is not bound to 127.0.0.1"
            published += 1
        assert not svc.get("network_mode") == "host", f"compose {name}: host networking publishes every port"
    assert published >= 3


def test_compose_dependencies_and_health(services):
    for name, svc in services.items():
        for dependency, condition in (svc.get("depends_on") or {}).items():
            assert dependency in services, f"compose {name} depends on unknown {dependency}"
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health, which has no healthcheck"
            if condition.get("condition") == "service_completed_successfully":
                assert str(services[dependency].get("restart", "no")) == "no", f"{dependency} is one-shot: restart must be no"
    for expected in ("ray-head", "ray-worker-1", "ray-worker-2", "mlflow", "postgres", "minio", "createbuckets"):
        assert expected in services, f"compose has no {expected} service"


def created_buckets(services) -> set[str]:
    buckets = set()
    for svc in services.values():
        text = command_text(svc.get("entrypoint")) + " " + command_text(svc.get("command"))
        buckets |= set(re.findall(r"mc mb(?: --[\w-]+)* [\w-]+/([a-z0-9][a-z0-9.\-]+)", text))
    return buckets


def test_mlflow_bucket_is_created(services):
    cmd = interpolate(command_text(services["mlflow"]["command"]))
    destination = urlparse(option(cmd, "--artifacts-destination"))
    assert destination.scheme == "s3"
    buckets = created_buckets(services)
    assert destination.netloc in buckets, f"MLflow writes to s3://{destination.netloc}, the stack creates {buckets}"
    assert services["mlflow"]["depends_on"]["createbuckets"]["condition"] == "service_completed_successfully"

    backend = urlparse(option(cmd, "--backend-store-uri"))
    assert backend.scheme.startswith("postgresql"), "MLflow's backend store should be PostgreSQL"
    assert backend.hostname in services and backend.port == 5432
    assert backend.path.lstrip("/") == services[backend.hostname]["environment"]["POSTGRES_DB"]

    endpoint = urlparse(services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"])
    assert endpoint.hostname in services, "MLFLOW_S3_ENDPOINT_URL must name the object store service"
    assert "server" in command_text(services[endpoint.hostname].get("command"))


def test_mlflow_accepts_the_ray_nodes_host_header(services, ray_services):
    """MLflow 3 rejects Host headers outside --allowed-hosts (default: localhost and private IPs)."""
    cmd = interpolate(command_text(services["mlflow"]["command"]))
    allowed = option(cmd, "--allowed-hosts")
    assert allowed, "compose mlflow needs --allowed-hosts for the name the Ray nodes use"
    patterns = allowed.split(",")
    for name, svc in ray_services.items():
        uri = urlparse(svc["environment"]["MLFLOW_TRACKING_URI"])
        assert any(fnmatch(uri.netloc, p) if "*" in p else uri.netloc == p for p in patterns), (
            f"{name} calls MLflow as {uri.netloc}, not in --allowed-hosts {allowed}")
    assert any(p.startswith("127.0.0.1") for p in patterns), "the browser on the host uses 127.0.0.1"


def test_local_spec_uses_the_stack(services, ray_services):
    from sweeper.spec import load_spec

    spec = load_spec(LOCAL_SPEC)
    storage = urlparse(spec.tracking.storage)
    assert storage.scheme == "s3", "trials on two machines need shared (S3) Ray Tune storage"
    assert storage.netloc in created_buckets(services)
    endpoint = parse_qs(storage.query)["endpoint_override"][0]
    host, port = endpoint.split(":")
    assert host in services and "server" in command_text(services[host].get("command"))
    assert f"127.0.0.1:{port}:{port}" in services[host]["ports"]
    for name, svc in ray_services.items():
        if "--head" not in command_text(svc["command"]):
            cpus = float(option(interpolate(command_text(svc["command"])), "--num-cpus"))
            assert spec.sweep.resources.cpu <= cpus, f"a trial needs {spec.sweep.resources.cpu} CPUs, {name} has {cpus}"


# ---------------------------------------------------------------------------------------------
# AWS launcher


def test_aws_config_is_valid_for_ray(aws):
    try:
        from ray.autoscaler._private.util import validate_config
    except ImportError:  # pragma: no cover - private API of the pinned Ray
        pytest.skip("this Ray has no cluster-config validator")
    validate_config(aws)  # Ray's own schema: unknown keys, node types, docker options
    assert aws["provider"]["type"] == "aws"
    head = aws["available_node_types"][aws["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "keep trials off the head"
    gpu_types = [n for n, t in aws["available_node_types"].items() if n != aws["head_node_type"]]
    assert gpu_types and all(aws["available_node_types"][n]["min_workers"] == 0 for n in gpu_types)
    assert not any(aws.get(key) for key in ("setup_commands", "head_setup_commands", "worker_setup_commands")), (
        "install things in the image, not at node start")


# ---------------------------------------------------------------------------------------------
# KubeRay


def test_kuberay_gpu_workers_and_aws_keys(kuberay_docs):
    for label, spec in ray_cluster_specs(kuberay_docs):
        for group in spec["workerGroupSpecs"]:
            limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
            assert int(limits.get("nvidia.com/gpu", 0)) >= 1, f"{label}:{group['groupName']} has no GPU limit"
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def cpu_count(quantity) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_rayjob_runs_the_spec_from_its_configmap(kuberay_docs):
    from sweeper.spec import load_spec

    docs = kuberay_docs[RAYJOB.name]
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    job = next(d for d in docs if d["kind"] == "RayJob")
    entry = shlex.split(job["spec"]["entrypoint"])
    assert entry[:4] == ["python", "-m", "sweeper.cli", "run"], f"RayJob entrypoint: {entry}"
    spec_path = Path(entry[4])

    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    volumes = {v["name"]: v for v in head.get("volumes", [])}
    mount = next(m for m in head["containers"][0].get("volumeMounts", []) if spec_path.parent == Path(m["mountPath"]))
    assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    assert spec_path.name in configmap["data"], f"the ConfigMap has no key {spec_path.name}"

    env = env_of(head["containers"][0])
    assert urlparse(env["MLFLOW_TRACKING_URI"]["value"]).scheme in ("http", "https")

    # The spec in the ConfigMap is valid, is the repository's study spec, and fits the GPU workers.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / spec_path.name
        path.write_text(configmap["data"][spec_path.name], encoding="utf-8")
        spec = load_spec(path)
    assert yaml.safe_load(configmap["data"][spec_path.name]) == load_yaml(ROOT / "search_spaces" / "jitdp-study.yaml"), (
        "the RayJob's ConfigMap should carry search_spaces/jitdp-study.yaml as it is")
    assert spec.tracking.storage.startswith("s3://"), "a multi-node sweep needs S3 storage for Ray Tune"
    fits = False
    for group in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        if (spec.sweep.resources.gpu <= float(limits.get("nvidia.com/gpu", 0))
                and spec.sweep.resources.cpu <= cpu_count(limits["cpu"])):
            fits = True
    assert fits, f"no worker group fits a trial's resources {spec.sweep.resources}"


# ---------------------------------------------------------------------------------------------
# MLflow authentication: the server runs basic-auth, credentials come from secrets, never from a job


MLFLOW_CREDENTIAL_ENV = {"MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_FLASK_SERVER_SECRET_KEY",
                         "MLFLOW_AUTH_ADMIN_PASSWORD", "SWEEPER_MLFLOW_PASSWORD"}


@pytest.fixture(scope="module")
def mlflow_k8s() -> list[dict]:
    return load_all_yaml(MLFLOW_K8S)


def ray_head_service(ray_services) -> tuple[str, dict]:
    return next((name, svc) for name, svc in ray_services.items() if "--head" in command_text(svc["command"]))


def mounted_secrets(svc: dict) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in svc.get("secrets", [])}


def test_compose_secret_files_are_mounted(compose, services):
    """Every NAME_FILE in compose is /run/secrets/SECRET, a secret that service mounts, from a file outside the repo."""
    found = 0
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            if not key.endswith("_FILE"):
                continue
            assert str(value).startswith("/run/secrets/"), f"compose {name}: {key}={value} is not a compose secret"
            secret = str(value).removeprefix("/run/secrets/")
            assert secret in mounted_secrets(svc), f"compose {name}: {key} reads secret {secret}, not mounted"
            source = interpolate(compose["secrets"][secret]["file"], {"HOME": "/home/someone"})
            assert not (DOCKER / source).resolve().is_relative_to(ROOT), f"secret {secret} lives in the repository"
            found += 1
    assert found >= 5, "expected the MLflow secrets as *_FILE variables"


def test_compose_mlflow_runs_basic_auth_from_secrets(compose, services):
    mlflow = services["mlflow"]
    command = interpolate(command_text(mlflow["command"]))
    assert option(command, "--app-name") == "basic-auth", "compose mlflow must run MLflow's built-in authentication"
    env = mlflow["environment"]
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD_FILE"].startswith("/run/secrets/")
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY_FILE"].startswith("/run/secrets/")
    assert env.get("MLFLOW_AUTH_DEFAULT_PERMISSION", "READ") in ("READ", "NO_PERMISSIONS")
    database = urlparse(env["MLFLOW_AUTH_DATABASE_URI"])
    volumes = {v.split(":")[1] for v in mlflow.get("volumes", [])}
    assert database.scheme == "sqlite" and any(database.path.lstrip("/").startswith(v.lstrip("/")) for v in volumes), (
        "the users database must live on a volume, or users vanish with the container")
    for svc_name, svc in services.items():
        env = svc.get("environment") or {}
        assert not MLFLOW_CREDENTIAL_ENV & set(env), f"compose {svc_name}: an MLflow credential as a value, not a file"
    for secret in ("mlflow_admin_password", "mlflow_flask_secret_key", "mlflow_sweeper_password"):
        assert "file" in compose["secrets"][secret], f"compose secret {secret} must be a file (made by mlflow-secrets.sh)"


def test_mlflow_image_entrypoint_writes_the_auth_config():
    """The image's entrypoint is docker/mlflow-auth.py, copied in (and let through .dockerignore); CMD runs basic-auth."""
    instructions = dockerfile(MLFLOW_DOCKERFILE)
    copies = [rest for word, rest in instructions if word == "COPY"]
    assert any("docker/mlflow-auth.py" in rest and rest.split()[-1] == "/usr/local/bin/mlflow-auth" for rest in copies)
    entrypoint = next(rest for word, rest in instructions if word == "ENTRYPOINT")
    assert ast.literal_eval(entrypoint)[:2] == ["mlflow-auth", "run"]
    cmd = ast.literal_eval(next(rest for word, rest in instructions if word == "CMD"))
    assert cmd[:2] == ["mlflow", "server"] and "--app-name" in cmd and cmd[cmd.index("--app-name") + 1] == "basic-auth"
    ignore = (DOCKER / "mlflow.Dockerfile.dockerignore").read_text().split()
    assert "!docker/mlflow-auth.py" in ignore


def test_compose_one_shot_creates_the_sweeps_user(services, ray_services):
    users = services["mlflow-users"]
    assert users["entrypoint"][:2] == ["mlflow-auth", "add-user"]
    uri = users["entrypoint"][users["entrypoint"].index("--uri") + 1]
    assert urlparse(uri).hostname == "mlflow"
    assert str(users.get("restart", "no")) == "no"
    assert users["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert image_name_tag(users["image"]) == image_name_tag(services["mlflow"]["image"])
    head_name, head = ray_head_service(ray_services)
    assert head["depends_on"]["mlflow-users"]["condition"] == "service_completed_successfully"
    # The user the one-shot makes is the one the head logs in as, with the same password secret.
    assert users["environment"]["SWEEPER_MLFLOW_USERNAME"] == head["environment"]["MLFLOW_TRACKING_USERNAME"]
    assert users["environment"]["SWEEPER_MLFLOW_USERNAME"] != users["environment"]["MLFLOW_AUTH_ADMIN_USERNAME"], (
        "sweeps log as an ordinary user, not the admin")
    assert users["environment"]["SWEEPER_MLFLOW_PASSWORD_FILE"] == head["environment"]["MLFLOW_TRACKING_PASSWORD_FILE"]


def test_compose_ray_head_gets_mlflow_credentials_from_a_secret(ray_services):
    head_name, head = ray_head_service(ray_services)
    env = head["environment"]
    assert env.get("MLFLOW_TRACKING_USERNAME"), f"compose {head_name}: no MLflow user for the job's driver"
    path = env["MLFLOW_TRACKING_PASSWORD_FILE"]
    assert path.startswith("/run/secrets/") and path.removeprefix("/run/secrets/") in mounted_secrets(head)
    for name, svc in ray_services.items():
        assert "MLFLOW_TRACKING_PASSWORD" not in svc["environment"], f"compose {name}: the password as a value"
        if name != head_name:  # trials never call MLflow: the workers need no MLflow credentials
            assert not {k for k in svc["environment"] if k.startswith("MLFLOW_TRACKING_PASSWORD")}
            assert "mlflow_sweeper_password" not in mounted_secrets(svc)
    # The worker image's entrypoint turns MLFLOW_TRACKING_PASSWORD_FILE into MLFLOW_TRACKING_PASSWORD.
    instructions = dockerfile(WORKER_DOCKERFILE)
    entrypoint = ast.literal_eval(next(rest for word, rest in instructions if word == "ENTRYPOINT"))
    assert entrypoint[-1] == "env-from-files"
    assert any("docker/env-from-files.sh" in rest and rest.split()[-1] == "/usr/local/bin/env-from-files"
               for word, rest in instructions if word == "COPY")
    assert "!docker/env-from-files.sh" in (DOCKER / "Dockerfile.dockerignore").read_text().split()


def test_env_from_files_sets_the_password(tmp_path):
    """docker/env-from-files.sh, run here with sh: NAME_FILE's content becomes NAME, then the command runs."""
    secret = tmp_path / "password"
    secret.write_text("s3cret-from-a-file\n")
    env = {"PATH": os.environ["PATH"], "MLFLOW_TRACKING_USERNAME": "sweeper", "MLFLOW_TRACKING_PASSWORD_FILE": str(secret)}
    out = subprocess.run(["sh", str(ENV_FROM_FILES), "env"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    seen = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    assert seen["MLFLOW_TRACKING_PASSWORD"] == "s3cret-from-a-file" and seen["MLFLOW_TRACKING_USERNAME"] == "sweeper"
    assert "MLFLOW_TRACKING_PASSWORD_FILE" not in seen
    env["MLFLOW_TRACKING_PASSWORD_FILE"] = str(tmp_path / "missing")
    out = subprocess.run(["sh", str(ENV_FROM_FILES), "true"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "cannot read" in out.stderr


@pytest.mark.slow  # imports MLflow's server in a subprocess: ~4 s
def test_mlflow_auth_run_writes_a_private_config_mlflow_reads(tmp_path):
    """docker/mlflow-auth.py run: basic_auth.ini (mode 600) from secret files, read back by MLflow's own reader;
    the Flask key exported; the admin password only in the file, never in the server's environment."""
    admin, key = "adm1n-%-pass-word", "flask-key-0123456789"  # a % must survive MLflow's ini interpolation
    (tmp_path / "admin").write_text(admin + "\n")
    (tmp_path / "key").write_text(key + "\n")
    config = tmp_path / "conf" / "basic_auth.ini"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
           "MLFLOW_AUTH_ADMIN_PASSWORD_FILE": str(tmp_path / "admin"), "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE": str(tmp_path / "key"),
           "MLFLOW_AUTH_DATABASE_URI": f"sqlite:///{tmp_path / 'users.db'}", "MLFLOW_AUTH_CONFIG_PATH": str(config),
           "MLFLOW_AUTH_ADMIN_PASSWORD": "ignored-because-the-file-is-the-one-source"}
    probe = ("import json, os; from mlflow.server.auth.config import read_auth_config; c = read_auth_config(); "
             "print(json.dumps({'user': c.admin_username, 'password': c.admin_password, 'db': c.database_uri, "
             "'permission': c.default_permission, 'key': os.environ.get('MLFLOW_FLASK_SERVER_SECRET_KEY'), "
             "'env_password': os.environ.get('MLFLOW_AUTH_ADMIN_PASSWORD')}))")
    out = subprocess.run([sys.executable, str(MLFLOW_AUTH_SCRIPT), "run", "--", sys.executable, "-c", probe],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"user": "admin", "password": admin, "db": env["MLFLOW_AUTH_DATABASE_URI"], "permission": "READ",
                    "key": key, "env_password": None}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    # A short password is one clear line, without the value.
    (tmp_path / "admin").write_text("short\n")
    out = subprocess.run([sys.executable, str(MLFLOW_AUTH_SCRIPT), "run", "--", "true"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "12 characters" in out.stderr
    assert "short" not in out.stderr.replace("shorter", "")


def test_kuberay_head_gets_mlflow_credentials_from_a_secret(kuberay_docs):
    for label, spec in ray_cluster_specs(kuberay_docs):
        for group, pod in ray_groups(spec):
            env = env_of(pod["containers"][0])
            if group == "head":  # the job's driver runs on the head: it logs to MLflow
                for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                    ref = env.get(name, {}).get("valueFrom", {}).get("secretKeyRef")
                    assert ref and ref["name"] == "sweeper-mlflow", f"{label}:head: {name} not from the sweeper-mlflow Secret"
            else:  # trials never call MLflow
                assert not MLFLOW_CREDENTIAL_ENV & set(env), f"{label}:{group} holds MLflow credentials it never uses"


def test_no_credentials_in_a_job_runtime_env(kuberay_docs):
    """The RayJob's runtime environment, which Ray shows to whoever lists jobs, holds no credential; nor does
    what `sweeper submit` sends (jobs.job_env), whatever the submitting shell holds."""
    from sweeper.sweep.jobs import FORWARDED_ENV, SECRET_NAME, job_env

    job = next(d for d in kuberay_docs[RAYJOB.name] if d["kind"] == "RayJob")
    runtime_env = yaml.safe_load(job["spec"].get("runtimeEnvYAML", "")) or {}
    for name, value in (runtime_env.get("env_vars") or {}).items():
        assert not SECRET_NAME.search(name), f"rayjob.yaml runtimeEnvYAML carries {name}"
        assert "@" not in str(value), f"rayjob.yaml runtimeEnvYAML {name} looks like a URL with credentials"
    assert not [name for name in FORWARDED_ENV if SECRET_NAME.search(name)]
    for name in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "AWS_SECRET_ACCESS_KEY", "RAY_AUTH_TOKEN"):
        assert SECRET_NAME.search(name), f"jobs.SECRET_NAME misses {name}"
    shell = {"MLFLOW_TRACKING_USERNAME": "sweeper", "MLFLOW_TRACKING_PASSWORD": "pw-from-the-shell",
             "MLFLOW_TRACKING_TOKEN": "tok", "AWS_SECRET_ACCESS_KEY": "aws", "MLFLOW_TRACKING_URI": "http://mlflow:5000"}
    saved = {name: os.environ.get(name) for name in shell}
    try:
        os.environ.update(shell)
        env = job_env("http://mlflow:5000")
        assert set(env) <= set(FORWARDED_ENV) | {"RAY_JOB_STOP_WAIT_TIME_S"}
        assert not set(env.values()) & {"pw-from-the-shell", "tok", "aws", "sweeper"}
        from sweeper.errors import SweeperError

        with pytest.raises(SweeperError, match="holds a password"):
            job_env("http://sweeper:pw-in-url@mlflow:5000")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_kubernetes_mlflow_runs_basic_auth_from_secrets(mlflow_k8s, kuberay_docs):
    deployment = next(d for d in mlflow_k8s if d["kind"] == "Deployment")
    service = next(d for d in mlflow_k8s if d["kind"] == "Service")
    job = next(d for d in mlflow_k8s if d["kind"] == "Job")
    assert not [d for d in mlflow_k8s if d["kind"] == "Secret"], "create Secrets with kubectl, not in git"
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = container["args"]
    assert args[:2] == ["mlflow", "server"] and args[args.index("--app-name") + 1] == "basic-auth"
    assert image_name_tag(container["image"]) == ("sweeper-mlflow", dockerfile_args(MLFLOW_DOCKERFILE)["MLFLOW_VERSION"])
    env = env_of(container)
    secret_mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    secret_volumes = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD_FILE", "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE"):
        folder = str(Path(env[name]["value"]).parent)
        assert secret_mounts.get(folder) in secret_volumes, f"mlflow: {name} is not in a mounted Secret"
    for name in ("MLFLOW_AUTH_DATABASE_URI", "MLFLOW_BACKEND_STORE_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name].get("valueFrom", {}).get("secretKeyRef"), f"mlflow: {name} not from a Secret"
    assert not MLFLOW_CREDENTIAL_ENV & set(env)
    # The Ray clusters' MLFLOW_TRACKING_URI names this Service, and the server accepts that Host header.
    allowed = args[args.index("--allowed-hosts") + 1].split(",")
    for label, _, ray_container in ray_containers(kuberay_docs):
        uri = urlparse(env_of(ray_container)["MLFLOW_TRACKING_URI"]["value"])
        assert uri.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
        assert uri.port == service["spec"]["ports"][0]["port"] == MLFLOW_PORT
        assert any(fnmatch(uri.netloc, p) for p in allowed), f"{label}: {uri.netloc} not in --allowed-hosts"
    # The one-shot Job makes the ordinary user from the same Secret.
    users = job["spec"]["template"]["spec"]
    assert users["containers"][0]["command"][:2] == ["mlflow-auth", "add-user"]
    users_env = env_of(users["containers"][0])
    assert users_env["SWEEPER_MLFLOW_USERNAME"]["value"] != users_env["MLFLOW_AUTH_ADMIN_USERNAME"]["value"]
    assert {v["secret"]["secretName"] for v in users["volumes"]} <= set(secret_volumes.values())


def test_aws_head_gets_mlflow_password_from_a_mounted_file(aws):
    head = next(c for c in aws["head_start_ray_commands"] if "ray start" in c)
    worker = next(c for c in aws["worker_start_ray_commands"] if "ray start" in c)
    path = re.search(r"\bMLFLOW_TRACKING_PASSWORD_FILE=(\S+?);?(?:\s|$)", head)
    assert path and "MLFLOW_TRACKING_USERNAME=" in head, "the head's start command must set the MLflow user"
    assert re.search(r'MLFLOW_TRACKING_PASSWORD="\$\(cat \$MLFLOW_TRACKING_PASSWORD_FILE\)"', head)
    mounts = aws.get("file_mounts", {})
    assert path[1] in mounts and mounts[path[1]].startswith("~"), "the password file comes from the user's home"
    assert "MLFLOW" not in worker.replace("MLFLOW_TRACKING_URI", ""), "workers need no MLflow credentials"
    assert not {"MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"} & set(aws_container_env(aws))


def test_mlflow_secrets_script_makes_private_random_files(tmp_path):
    folder = tmp_path / "secrets"
    for _ in range(2):  # the second run keeps what the first made
        out = subprocess.run(["sh", str(MLFLOW_SECRETS_SCRIPT), str(folder)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        if _ == 0:
            first = {p.name: p.read_text() for p in folder.iterdir()}
    assert {p.name: p.read_text() for p in folder.iterdir()} == first
    assert set(first) == {"admin_password", "sweeper_password", "flask_secret_key"}
    assert all(len(value.strip()) >= 32 for value in first.values()) and len(set(first.values())) == 3
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
