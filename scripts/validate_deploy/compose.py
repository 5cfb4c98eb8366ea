"""docker-compose.yml: schema and cross-checks with the config, Prometheus and Grafana."""

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
from dockerfile import *  # noqa: F401,F403

# ----------------------------------------------------------------- compose

_VAR = re.compile(
    r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value, unset):
    """Compose variable substitution with no variables set: what `docker compose` does on a clean shell."""
    if isinstance(value, dict):
        return {k: interpolate(v, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, unset) for v in value]
    if not isinstance(value, str):
        return value

    def replace(m):
        if m.group(1):
            return "$"
        name, op, arg = m.group(2) or m.group(5), m.group(3), m.group(4) or ""
        if op in (":-", "-"):
            return interpolate(arg, unset)
        if op in (":+", "+"):
            return ""
        unset.add(name)
        return ""

    return _VAR.sub(replace, value)


def compose_env(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def load_compose(c):
    raw = load_yaml(COMPOSE_FILE)
    unset = set()
    compose = interpolate(raw, unset)
    c.expect(not unset, f"variables without a default (compose would warn and use empty): {sorted(unset)}")
    facts["compose"] = compose
    return compose


def check_compose_schema(c):
    compose = load_compose(c)
    ref = importlib.resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(ref.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    for error in sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path)
        c.problems.append(f"{where}: {error.message[:300]}")
    version = importlib.metadata.version("check-jsonschema")
    c.note(f"JSON schema: compose-spec.json vendored by check-jsonschema {version} "
           f"({validator_cls.__name__}), after variable substitution with defaults")


def check_docker_compose_config(c):
    if not have("docker") or sh(["docker", "compose", "version"]).returncode != 0:
        raise Skip("`docker compose` is not available here (no compose plugin); the JSON-schema check stands in")
    done = sh(["docker", "compose", "-f", str(COMPOSE_FILE), "--profile", "demo", "config", "-q"], cwd=ROOT)
    c.expect(done.returncode == 0, f"docker compose config -q: {done.stderr.strip()[-500:]}")


def group_of(service):
    command = service.get("command")
    if isinstance(command, str):
        command = command.split()
    if not command or command[0] != "run" or "--groups" not in command:
        return None
    return command[command.index("--groups") + 1]


def config_arg(argv):
    for flag in ("--config", "-c"):
        if flag in argv:
            return argv[argv.index(flag) + 1]
    return None


def healthcheck_argv(test):
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    if test and test[0] == "CMD":
        return list(test[1:])
    if test and test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", test[1]]
    return None


def check_compose_semantics(c):
    compose = facts.get("compose") or load_compose(c)
    reference = reference_config()
    services = compose.get("services", {})
    volumes = compose.get("volumes") or {}
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        for dep, spec in depends.items():
            if not c.expect(dep in services, f"{name}: depends_on unknown service {dep}"):
                continue
            condition = spec.get("condition", "service_started")
            target = services[dep]
            if condition == "service_healthy":
                hc = target.get("healthcheck") or {}
                c.expect(hc.get("test") and not hc.get("disable"),
                         f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck")
            if condition == "service_completed_successfully":
                c.expect(str(target.get("restart", "no")) == "no",
                         f"{name} waits for {dep} to complete, but {dep} restarts")
            c.expect(set(target.get("profiles") or []) <= set(service.get("profiles") or []),
                     f"{name} depends on {dep}, which is in a profile {name} is not in")
        for mount in service.get("volumes") or []:
            if isinstance(mount, dict):
                source, kind = mount.get("source"), mount.get("type")
            else:
                source = mount.split(":")[0]
                kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            if kind == "bind":
                c.expect((ROOT / source).exists(), f"{name}: bind mount source {source} does not exist")
            elif kind == "volume" and source:
                c.expect(source in volumes, f"{name}: named volume {source} is not declared")
        build = service.get("build")
        if build:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            c.expect((ROOT / context / dockerfile).exists(), f"{name}: {context}/{dockerfile} does not exist")

    # Kafka: KRaft, listeners, cluster id.
    kafka = services.get("kafka")
    if c.expect(kafka is not None, "a `kafka` service"):
        env = compose_env(kafka)
        c.expect("controller" in env.get("KAFKA_PROCESS_ROLES", ""), "kafka runs in KRaft mode (process.roles)")
        try:
            c.expect(len(base64.urlsafe_b64decode(env.get("CLUSTER_ID", "") + "==")) == 16,
                     "CLUSTER_ID is a base64url UUID")
        except ValueError:
            c.problems.append("CLUSTER_ID is not base64url")
        listeners = dict(l.split("://", 1) for l in env.get("KAFKA_LISTENERS", "").split(",") if l)
        advertised = dict(l.split("://", 1) for l in env.get("KAFKA_ADVERTISED_LISTENERS", "").split(",") if l)
        protocols = dict(p.split(":", 1) for p in env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "").split(",") if p)
        for listener in list(listeners) + list(advertised):
            c.expect(listener in protocols, f"listener {listener} has no security protocol")
        c.expect(set(advertised) <= set(listeners), "every advertised listener is a listener")
        c.expect(env.get("KAFKA_CONTROLLER_LISTENER_NAMES") in listeners, "the controller listener exists")
        c.expect(advertised.get(env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT")) == "kafka:9092",
                 "the compose network reaches the broker at kafka:9092")
        c.expect(env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") == "false",
                 "auto topic creation is off (topics come with the configured partitions)")

    # Topics: the one-shot service creates every topic of schemas/src/topics.rs.
    topics_service = next((s for s in services.values()
                           if any("create-topics" in str(x) for x in (s.get("entrypoint") or []))), None)
    partitions_created = None
    if c.expect(topics_service is not None, "a topic-creation service"):
        script = ROOT / "deploy" / "compose" / "create-topics.sh"
        text = script.read_text()
        m = re.search(r"TOPICS=\(([^)]*)\)", text)
        created = set(m.group(1).split()) if m else set()
        c.expect(set(rust_topics()) <= created,
                 f"create-topics.sh lacks topics of schemas/src/topics.rs: {sorted(set(rust_topics()) - created)}")
        partitions_created = int(compose_env(topics_service).get("PARTITIONS", "0"))
        c.note(f"topics: {' '.join(sorted(created))} with {partitions_created} partitions "
               "(all of schemas/src/topics.rs)")

    # The scoutstream services: config each would load, ports, health, dependencies.
    copies = facts.get("runtime_copies") or {}
    groups_seen = {}
    prometheus_targets = set()
    for name, service in services.items():
        if not service.get("build"):
            continue
        command = service.get("command") or []
        env = compose_env(service)
        for key in env:
            if key.startswith("SCOUTSTREAM__"):
                c.expect(env_key_known(key, reference), f"{name}: {key} names no config key")
        path = config_arg(command)
        host_file = None
        if path:
            for mount in service.get("volumes") or []:
                parts = mount.split(":") if isinstance(mount, str) else [mount.get("source"), mount.get("target")]
                if len(parts) >= 2 and parts[1] == path:
                    host_file = ROOT / parts[0]
            if host_file is None and path in copies:
                host_file = ROOT / copies[path]
            c.expect(host_file is not None and host_file.exists(),
                     f"{name}: --config {path} is neither mounted nor copied into the image")
        file_table = tomllib.loads(host_file.read_text()) if host_file else {}
        effective = overlay(file_table, env)
        group = group_of(service)
        extract["configs"].append({
            "origin": f"docker-compose.yml service `{name}`",
            "config_file": str(host_file) if host_file else None,
            "env": {k: v for k, v in env.items() if k.startswith("SCOUTSTREAM__")},
            "groups": group.split(",") if group else [],
            "expect": {
                "backend": "kafka",
                "brokers": "kafka:9092",
                "partitions": partitions_created,
                "metrics_port": 9464 if group else None,
            },
        })
        c.expect(get(effective, "bus.backend") == "kafka", f"{name}: bus.backend is kafka")
        c.expect(get(effective, "bus.kafka.brokers") == "kafka:9092", f"{name}: brokers kafka:9092")
        c.expect(get(effective, "bus.partitions") == partitions_created,
                 f"{name}: bus.partitions {get(effective, 'bus.partitions')} != {partitions_created} created")
        if not group:
            c.expect((service.get("healthcheck") or {}).get("disable") is True,
                     f"{name}: one-shot command with the image's /healthz HEALTHCHECK not disabled")
            continue
        for g in group.split(","):
            c.expect(g in GROUP_TOPICS, f"{name}: unknown group {g}")
            groups_seen[g] = name
        bind = get(effective, "observe.bind", "")
        c.expect(bind.startswith("0.0.0.0:"), f"{name}: observe.bind {bind} is not reachable from other containers")
        port = port_of(bind)
        hc = service.get("healthcheck") or {}
        argv = healthcheck_argv(hc.get("test"))
        if c.expect(argv and f"/{port}" in " ".join(argv), f"{name}: healthcheck asks port {port}"):
            path_asked = re.search(r"GET (/\S+)", " ".join(argv))
            c.expect(path_asked and path_asked.group(1) in health_routes(),
                     f"{name}: healthcheck path is not a route of pipeline/src/observe/server.rs")
            extract["probes"].append({"origin": f"docker-compose.yml `{name}` healthcheck", "argv": argv,
                                      "port": port, "path": path_asked.group(1) if path_asked else None})
        prometheus_targets.add(f"{name}:{port}")
        deps = service.get("depends_on") or {}
        c.expect("kafka" in deps, f"{name}: depends on kafka")
        if topics_service is not None:
            topics_name = next(n for n, s in services.items() if s is topics_service)
            c.expect(deps.get(topics_name, {}).get("condition") == "service_completed_successfully",
                     f"{name}: waits for the topics to be created")
        # Every `run` process opens the database and the cache (the jobs API is
        # served beside /metrics), so every one needs both, whatever its group.
        url = get(effective, "database.url", "")
        pg = compose_env(services.get("postgres", {}))
        c.expect(deps.get("postgres", {}).get("condition") == "service_healthy",
                 f"{name}: waits for postgres to be healthy")
        want = f"postgres://{pg.get('POSTGRES_USER')}:{pg.get('POSTGRES_PASSWORD')}@postgres:5432/{pg.get('POSTGRES_DB')}"
        c.expect(url == want, f"{name}: database.url {url} does not match the postgres service ({want})")
        ref_url = get(reference, "database.url", "")
        c.expect(ref_url.rsplit("/", 1)[1] == pg.get("POSTGRES_DB")
                 and ref_url.split("//")[1].split("@")[0].split(":")[0] == pg.get("POSTGRES_USER"),
                 "postgres user/db match deploy/config/scoutstream.toml")
        c.expect(deps.get("redis", {}).get("condition") == "service_healthy",
                 f"{name}: waits for redis to be healthy")
        for key in ("cache.redis_url", "jobs.redis_url"):
            c.expect(get(effective, key) == "redis://redis:6379", f"{name}: {key} is {get(effective, key)}")
    c.expect(set(groups_seen) == set(GROUP_TOPICS),
             f"one service per consumer group: groups without a service {sorted(set(GROUP_TOPICS) - set(groups_seen))}, "
             f"services of unknown groups {sorted(set(groups_seen) - set(GROUP_TOPICS))}")
    facts["compose_group_services"] = groups_seen
    facts["compose_prometheus_targets"] = prometheus_targets
    producer = services.get("producer")
    if c.expect(producer is not None, "a `producer` service"):
        c.expect("demo" in (producer.get("profiles") or []), "producer is in the `demo` profile")
        c.expect("produce" in producer.get("command", []) and "--generate" in producer.get("command", []),
                 "producer runs `produce --generate N`")
    c.note(f"services: {', '.join(services)}; groups: "
           + ", ".join(f"{g}->{s}" for g, s in sorted(groups_seen.items())))


def check_compose_prometheus(c):
    compose = facts.get("compose") or load_compose(c)
    prom = compose["services"].get("prometheus")
    if not c.expect(prom is not None, "a `prometheus` service"):
        return
    mounts = {}
    for mount in prom.get("volumes") or []:
        parts = mount.split(":")
        if parts[0].startswith("."):
            mounts[parts[1]] = ROOT / parts[0]
    config_path = next((a.split("=", 1)[1] for a in prom.get("command", []) if a.startswith("--config.file=")),
                       "/etc/prometheus/prometheus.yml")
    host_config = mounts.get(config_path)
    if not c.expect(host_config and host_config.exists(), f"{config_path} is mounted from the repo"):
        return
    config = load_yaml(host_config)
    targets = set()
    for job in config.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            targets.update(static.get("targets", []))
    want = facts.get("compose_prometheus_targets", set())
    c.expect(targets == want, f"scrape targets {sorted(targets)} != the group services {sorted(want)}")
    container_dir = os.path.dirname(config_path)
    rule_files = []  # (pattern, matched host files)
    for pattern in config.get("rule_files", []):
        absolute = pattern if pattern.startswith("/") else f"{container_dir}/{pattern}"
        host = None
        for target, source in mounts.items():
            if absolute.startswith(target + "/"):
                host = source / absolute[len(target) + 1:]
        if c.expect(host is not None, f"rule_files {pattern} is not mounted"):
            found = sorted(host.parent.glob(host.name))
            c.expect(found, f"rule_files {pattern} matches no file")
            rule_files.append((pattern, found))
    if have("promtool"):
        with tempfile.TemporaryDirectory() as tmp:
            # The container's layout: prometheus.yml beside rules/.
            layout = pathlib.Path(tmp)
            shutil.copy(host_config, layout / "prometheus.yml")
            for pattern, found in rule_files:
                c.expect(not pattern.startswith("/"), f"rule_files {pattern}: keep it relative to the config")
                sub = layout / os.path.dirname(pattern)
                sub.mkdir(parents=True, exist_ok=True)
                for f in found:
                    shutil.copy(f, sub / f.name)
            done = sh(["promtool", "check", "config", str(layout / "prometheus.yml")])
            c.expect(done.returncode == 0, f"promtool check config: {(done.stdout + done.stderr).strip()[-500:]}")
        count = sum(len(found) for _, found in rule_files)
        c.note(f"promtool check config with the {count} rule file(s) in the container's layout; "
               f"targets {', '.join(sorted(targets))}")
    else:
        c.note(f"promtool not installed: config and rules checked as YAML only; targets {', '.join(sorted(targets))}")


def check_compose_grafana(c):
    compose = facts.get("compose") or load_compose(c)
    grafana = compose["services"].get("grafana")
    if not c.expect(grafana is not None, "a `grafana` service"):
        return
    mounts = {}
    for mount in grafana.get("volumes") or []:
        parts = mount.split(":")
        if parts[0].startswith("."):
            mounts[parts[1]] = ROOT / parts[0]
    provisioning = mounts.get("/etc/grafana/provisioning")
    if not c.expect(provisioning is not None, "deploy/grafana/provisioning is mounted at /etc/grafana/provisioning"):
        return
    uids = set()
    for path in sorted((provisioning / "datasources").glob("*.y*ml")):
        for source in load_yaml(path).get("datasources", []):
            uids.add(source.get("uid"))
            url = source.get("url", "")
            m = re.match(r"https?://([^:/]+):(\d+)", url)
            c.expect(m and m.group(1) in compose["services"], f"datasource url {url}: no such service")
            if m and m.group(1) == "prometheus":
                c.expect(m.group(2) == "9090", "datasource port is Prometheus' 9090")
    for path in sorted((provisioning / "dashboards").glob("*.y*ml")):
        for provider in load_yaml(path).get("providers", []):
            target = provider.get("options", {}).get("path")
            host = mounts.get(target)
            c.expect(host is not None and host.is_dir(), f"dashboards path {target} is not mounted from the repo")
            for dashboard in sorted(host.glob("*.json")) if host else []:
                for uid in datasource_uids(json.loads(dashboard.read_text())):
                    c.expect(uid in uids, f"{dashboard.name} uses datasource uid {uid}, not provisioned")
    c.note(f"provisioning and dashboards mounted; datasource uids {sorted(uids)}")


def datasource_uids(node):
    found = set()
    if isinstance(node, dict):
        source = node.get("datasource")
        if isinstance(source, dict) and source.get("uid") and not str(source["uid"]).startswith("$"):
            found.add(source["uid"])
        for value in node.values():
            found |= datasource_uids(value)
    elif isinstance(node, list):
        for value in node:
            found |= datasource_uids(value)
    return found


def check_shell(c):
    scripts = sorted((ROOT / "deploy" / "compose").glob("*.sh"))
    for script in scripts:
        done = sh(["bash", "-n", str(script)])
        c.expect(done.returncode == 0, f"bash -n {rel(script)}: {done.stderr.strip()}")
    if have("shellcheck"):
        done = sh(["shellcheck", *map(str, scripts)])
        c.expect(done.returncode == 0, f"shellcheck: {done.stdout.strip()[-800:]}")
        c.note(f"bash -n and shellcheck: {', '.join(rel(s) for s in scripts)}")
    else:
        c.note(f"bash -n: {', '.join(rel(s) for s in scripts)} (shellcheck not installed: not linted)")


