#!/usr/bin/env python3
"""The deployment checks. Each prints `ok`, `FAIL` or `skip` with what it covered.

Run by scripts/validate-deploy.sh with its pinned dependencies: `python3 scripts/validate_deploy ROOT`."""

import base64
import copy
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

import importlib.metadata
import importlib.resources

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import yaml
from dockerfile_parse import DockerfileParser


from common import *  # noqa: F401,F403  (the checker, paths and helpers)
from compose import *  # noqa: F401,F403
from dockerfile import *  # noqa: F401,F403
from kubernetes import *  # noqa: F401,F403

# ------------------------------------------------------------- YAML parse

def check_yaml_parse(c):
    paths = [COMPOSE_FILE] + sorted((ROOT / "deploy").rglob("*.y*ml"))
    for path in paths:
        try:
            load_yaml_all(path)
        except yaml.YAMLError as err:
            c.problems.append(f"{rel(path)}: {err}")
    dashboards = sorted((ROOT / "deploy").rglob("*.json"))
    for path in dashboards:
        try:
            json.loads(path.read_text())
        except ValueError as err:
            c.problems.append(f"{rel(path)}: {err}")
    tomls = sorted((ROOT / "deploy").rglob("*.toml"))
    for path in tomls:
        try:
            tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            c.problems.append(f"{rel(path)}: {err}")
    c.note(f"{len(paths)} YAML files (duplicate keys rejected), {len(dashboards)} JSON, {len(tomls)} TOML")


# ------------------------------------------------------------------- main

print(f"validate-deploy: {ROOT}", flush=True)
run("YAML/JSON/TOML parse of every deployment file", check_yaml_parse)
run("Dockerfile (dockerfile-parse): stages, user, ports, entrypoint, no ADD", check_dockerfile)
run("build context (.dockerignore) holds what the build and include_str! need", check_build_context)
run("Dockerfile planner stage: dependency skeleton accepted by cargo", check_planner_skeleton)
run("docker-compose.yml against the compose-spec JSON schema", check_compose_schema)
run("docker compose config -q", check_docker_compose_config)
run("docker-compose.yml cross-checks (dependencies, mounts, config, topics, health)", check_compose_semantics)
run("compose Prometheus: scrape targets and rule files", check_compose_prometheus)
run("compose Grafana: provisioning and dashboards", check_compose_grafana)
run("deploy/compose shell scripts", check_shell)
run("Kubernetes manifests against their schemas", check_k8s_schemas)
run("kustomization.yaml", check_kustomization)
run("Kubernetes cross-checks (config, probes, security, KEDA vs config)", check_k8s_semantics)

if EXTRACT:
    out = pathlib.Path(EXTRACT)
    out.mkdir(parents=True, exist_ok=True)
    (out / "deploy.json").write_text(json.dumps(extract, indent=2))
    print(f"wrote {out / 'deploy.json'}: {len(extract['configs'])} configs, {len(extract['probes'])} probes "
          "(loaded and run by cli/tests/deploy_files.rs)", flush=True)

failed = [r for r in results if r[0] == "FAIL"]
skipped = [r for r in results if r[0] == "skip"]
print()
print(f"exercised: {len(results) - len(skipped) - len(failed)} checks passed, {len(failed)} failed, "
      f"{len(skipped)} skipped")
for _, name, why in skipped:
    print(f"  skipped: {name}: {why}")
print("not exercised here (no container engine, no cluster):")
for line in (
    "the image was not built: the Dockerfile's RUN steps other than the planner's were not executed",
    "the compose stack was not started: no container ran, no healthcheck ran in a container, Kafka, Redis, "
    "PostgreSQL, Prometheus and Grafana images were not pulled or configured for real",
    "deploy/compose/create-topics.sh did not run against a broker (syntax-checked only)",
    "nothing was applied to a Kubernetes API server: no admission (Pod Security), no KEDA controller, "
    "no scaling, no probes by a kubelet",
):
    print(f"  - {line}")
print(f"validate-deploy: {'FAILED' if failed else 'OK'}")
sys.exit(1 if failed else 0)

