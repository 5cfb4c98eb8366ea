"""The Kubernetes manifests: schemas, kustomization and cross-checks."""

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

# -------------------------------------------------------------- Kubernetes

# ScaledObject (keda.sh/v1alpha1): KEDA's CRD is not shipped by kubernetes-validate.
# Written from KEDA 2.x's documented ScaledObject fields and the Kafka scaler's
# documented metadata; unknown fields are errors (they are typos KEDA ignores).
KEDA_SCALEDOBJECT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 253},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string", "minLength": 1},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "properties": {"failureThreshold": {"type": "integer"}, "replicas": {"type": "integer"},
                                   "behavior": {"type": "string"}},
                },
                "advanced": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {
                                "type": "object", "required": ["name"],
                                "properties": {"name": {"type": "string"},
                                               "kind": {"enum": ["TriggerAuthentication",
                                                                 "ClusterTriggerAuthentication"]}},
                            },
                            # KEDA reads every metadata value as a string.
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                        },
                        "allOf": [{
                            "if": {"properties": {"type": {"const": "kafka"}}},
                            "then": {"properties": {"metadata": {
                                "required": ["bootstrapServers", "consumerGroup"],
                                "additionalProperties": False,
                                "properties": {
                                    "bootstrapServers": {"type": "string", "pattern": r"^[^,:\s]+:\d+(,[^,:\s]+:\d+)*$"},
                                    "bootstrapServersFromEnv": {"type": "string"},
                                    "consumerGroup": {"type": "string", "minLength": 1},
                                    "consumerGroupFromEnv": {"type": "string"},
                                    "topic": {"type": "string", "minLength": 1},
                                    "topicFromEnv": {"type": "string"},
                                    "lagThreshold": {"type": "string", "pattern": r"^[1-9][0-9]*$"},
                                    "activationLagThreshold": {"type": "string", "pattern": r"^[0-9]+$"},
                                    "offsetResetPolicy": {"enum": ["latest", "earliest"]},
                                    "allowIdleConsumers": {"enum": ["true", "false"]},
                                    "excludePersistentLag": {"enum": ["true", "false"]},
                                    "scaleToZeroOnInvalidOffset": {"enum": ["true", "false"]},
                                    "limitToPartitionsWithLag": {"enum": ["true", "false"]},
                                    "ensureEvenDistributionOfPartitions": {"enum": ["true", "false"]},
                                    "partitionLimitation": {"type": "string"},
                                    "version": {"type": "string"},
                                    "sasl": {"type": "string"},
                                    "tls": {"enum": ["enable", "disable"]},
                                    "unsafeSsl": {"enum": ["true", "false"]},
                                },
                            }}},
                        }],
                    },
                },
            },
        },
    },
}

KUSTOMIZATION_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "resources"],
    "properties": {
        "apiVersion": {"const": "kustomize.config.k8s.io/v1beta1"},
        "kind": {"const": "Kustomization"},
        "namespace": {"type": "string"},
        "resources": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "labels": {"type": "array"},
        "images": {"type": "array", "items": {"type": "object", "required": ["name"]}},
    },
}


def k8s_versions():
    def key(v):
        return tuple(int(x) for x in re.findall(r"\d+", v)[:3])
    versions = [v for v in kv_utils.all_versions() if key(v)[:2] >= K8S_MIN_VERSION]
    versions.sort(key=key)
    return [versions[0], versions[-1]] if len(versions) > 1 else versions


def k8s_documents():
    docs = []
    for path in sorted(K8S_DIR.glob("*.y*ml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_yaml_all(path):
            docs.append((path, doc))
    return docs


def validate_k8s_docs(c, docs, label):
    versions = k8s_versions()
    counts = {}
    for path, doc in docs:
        kind = doc.get("kind")
        where = f"{label or rel(path)} {kind}/{doc.get('metadata', {}).get('name')}"
        counts[kind] = counts.get(kind, 0) + 1
        if doc.get("apiVersion", "").startswith("keda.sh/"):
            validator = jsonschema.Draft202012Validator(KEDA_SCALEDOBJECT_SCHEMA)
            for error in validator.iter_errors(doc):
                c.problems.append(f"{where}: {'/'.join(map(str, error.absolute_path))}: {error.message[:200]}")
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                c.problems.append(f"{where} (Kubernetes {version}): {'/'.join(map(str, err.path))}: {err.message[:200]}")
            except kv_utils.SchemaNotFoundError:
                c.problems.append(f"{where}: no Kubernetes {version} schema for {doc.get('apiVersion')} {kind}")
    return versions, counts


def check_k8s_schemas(c):
    docs = k8s_documents()
    facts["k8s_docs"] = docs
    versions, counts = validate_k8s_docs(c, docs, None)
    c.note(f"{len(docs)} objects ({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}); built-in kinds "
           f"against kubernetes-validate {importlib.metadata.version('kubernetes-validate')}'s strict schemas for "
           f"Kubernetes {' and '.join(versions)}; ScaledObjects against the KEDA schema written in this script")


def check_kustomization(c):
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    for error in jsonschema.Draft202012Validator(KUSTOMIZATION_SCHEMA).iter_errors(kustomization):
        c.problems.append(f"kustomization.yaml: {error.message[:200]}")
    listed = set(kustomization.get("resources", []))
    for resource in listed:
        c.expect((K8S_DIR / resource).exists(), f"kustomization lists missing {resource}")
    present = {p.name for p in K8S_DIR.glob("*.y*ml")} - {"kustomization.yaml"}
    c.expect(present <= listed, f"manifests not in kustomization.yaml: {sorted(present - listed)}")
    images = {i["name"] for i in kustomization.get("images", [])}
    for path, doc in facts.get("k8s_docs") or k8s_documents():
        for container in get(doc, "spec.template.spec.containers", []) or []:
            name = container["image"].split(":")[0]
            c.expect(name in images, f"image {name} has no `images` entry in kustomization.yaml")
    if not have("kubectl"):
        c.note("kubectl not installed: the kustomization was not rendered")
        return
    done = sh(["kubectl", "kustomize", str(K8S_DIR)])
    if not c.expect(done.returncode == 0, f"kubectl kustomize: {done.stderr.strip()[-400:]}"):
        return
    rendered = [d for d in yaml.load_all(done.stdout, Loader=StrictLoader) if d]
    for doc in rendered:
        if doc["kind"] != "Namespace":
            c.expect(doc["metadata"].get("namespace") == kustomization.get("namespace"),
                     f"rendered {doc['kind']}/{doc['metadata']['name']} is not in the namespace")
    before = len(c.problems)
    validate_k8s_docs(c, [(K8S_DIR / "kustomization.yaml", d) for d in rendered], "rendered")
    if len(c.problems) == before:
        c.note(f"kubectl kustomize rendered {len(rendered)} objects; they validate too")


def check_k8s_semantics(c):
    docs = facts.get("k8s_docs") or k8s_documents()
    by_kind = {}
    for path, doc in docs:
        by_kind.setdefault(doc["kind"], []).append((path, doc))
    configmaps = {d["metadata"]["name"]: d for _, d in by_kind.get("ConfigMap", [])}
    reference = reference_config()
    tables = {}
    for name, cm in configmaps.items():
        for key, text in (cm.get("data") or {}).items():
            if key.endswith(".toml"):
                table = tomllib.loads(text)
                tables[(name, key)] = table
                for unknown in unknown_keys(table, reference):
                    c.problems.append(f"ConfigMap {name}/{key}: `{unknown}` is not a key of "
                                      "deploy/config/scoutstream.toml (the code rejects unknown keys)")
    routes = health_routes()
    deployments = {d["metadata"]["name"]: (p, d) for p, d in by_kind.get("Deployment", [])}
    groups_seen = {}
    for name, (path, deployment) in deployments.items():
        pod = deployment["spec"]["template"]
        labels = pod["metadata"].get("labels", {})
        c.expect(all(labels.get(k) == v for k, v in deployment["spec"]["selector"]["matchLabels"].items()),
                 f"{name}: selector does not match the pod labels")
        spec = pod["spec"]
        psc = spec.get("securityContext", {})
        c.expect(psc.get("runAsNonRoot") is True, f"{name}: pod runAsNonRoot")
        if "image_uid" in facts:
            c.expect(psc.get("runAsUser") == facts["image_uid"],
                     f"{name}: runAsUser {psc.get('runAsUser')} != the image's USER {facts['image_uid']}")
        annotations = pod["metadata"].get("annotations", {})
        c.expect(annotations.get("prometheus.io/scrape") == "true", f"{name}: prometheus.io/scrape annotation")
        containers = spec["containers"]
        c.expect(len(containers) == 1, f"{name}: one container")
        container = containers[0]
        sc = container.get("securityContext", {})
        c.expect(sc.get("readOnlyRootFilesystem") is True, f"{name}: read-only root file system")
        c.expect(sc.get("allowPrivilegeEscalation") is False, f"{name}: no privilege escalation")
        c.expect("ALL" in (sc.get("capabilities", {}).get("drop") or []), f"{name}: drops all capabilities")
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for res in ("cpu", "memory"):
                c.expect(res in resources.get(kind, {}), f"{name}: resources.{kind}.{res}")
        args = container.get("args") or []
        c.expect(args[:1] == ["run"] and "--groups" in args, f"{name}: runs `run --groups <group>`")
        group = args[args.index("--groups") + 1] if "--groups" in args else None
        c.expect(group in GROUP_TOPICS, f"{name}: unknown group {group}")
        groups_seen[group] = name
        # The config file the process reads: the ConfigMap mounted at --config's folder.
        config_path = config_arg(args)
        table = None
        if c.expect(config_path, f"{name}: passes --config"):
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            volume = volumes.get(mounts.get(os.path.dirname(config_path)), {})
            cm_name = volume.get("configMap", {}).get("name")
            key = os.path.basename(config_path)
            c.expect(cm_name in configmaps, f"{name}: --config {config_path} is not a mounted ConfigMap")
            table = tables.get((cm_name, key))
            c.expect(table is not None, f"{name}: ConfigMap {cm_name} has no {key}")
        env = {}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            elif item["name"].startswith("SCOUTSTREAM__"):
                c.expect(env_key_known(item["name"], reference), f"{name}: {item['name']} names no config key")
                if item["name"] == "SCOUTSTREAM__JOBS__API_TOKEN":
                    # `run` refuses an API without a token on a non-loopback bind.
                    c.expect(get(item, "valueFrom.secretKeyRef.optional") in (False, None),
                             f"{name}: {item['name']} from a Secret must be required (no token, no API on the network)")
                else:
                    c.expect(get(item, "valueFrom.secretKeyRef.optional") is True,
                             f"{name}: {item['name']} from a Secret should be optional (the ConfigMap has a default)")
        for key in env:
            if key.startswith("SCOUTSTREAM__"):
                c.expect(env_key_known(key, reference), f"{name}: {key} names no config key")
        effective = overlay(table or {}, env)
        serves_api = get(effective, "groups.serve_api", None)
        if serves_api is None:
            serves_api = "jobs" in (group or "").split(",")
        c.expect(not serves_api or any(item["name"] == "SCOUTSTREAM__JOBS__API_TOKEN" for item in container.get("env", [])) or get(effective, "jobs.api_token"),
                 f"{name}: serves the jobs API on the network but gets no jobs.api_token")
        bind = get(effective, "observe.bind", "127.0.0.1:9464")
        c.expect(bind.startswith("0.0.0.0:"), f"{name}: observe.bind {bind} is not reachable by the kubelet")
        port = port_of(bind)
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        c.expect(port in ports.values(), f"{name}: containerPort {list(ports.values())} != observe.bind port {port}")
        c.expect(annotations.get("prometheus.io/port") == str(port), f"{name}: prometheus.io/port != {port}")
        for probe_name, want in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                                 ("readinessProbe", "/readyz")):
            probe = container.get(probe_name, {}).get("httpGet", {})
            probe_port = ports.get(probe.get("port"), probe.get("port"))
            c.expect(probe.get("path") == want and probe_port == port,
                     f"{name}: {probe_name} is GET {want} on {port}")
            c.expect(probe.get("path") in routes, f"{name}: {probe_name} path is not served")
            extract["probes"].append({"origin": f"{rel(path)} `{name}` {probe_name}", "argv": None,
                                      "http_get": probe.get("path"), "port": probe_port})
        extract["configs"].append({
            "origin": f"{rel(path)} Deployment `{name}`",
            "config_toml": tomllib_dump_source(configmaps, volume, config_path) if config_path else None,
            "env": {k: v for k, v in env.items() if k.startswith("SCOUTSTREAM__")},
            "groups": [group] if group else [],
            "expect": {"backend": "kafka", "metrics_port": port},
        })
        facts.setdefault("k8s_effective", {})[group] = (name, effective, extract["configs"][-1])
    c.expect(set(groups_seen) == set(GROUP_TOPICS),
             f"one Deployment per consumer group: groups without one {sorted(set(GROUP_TOPICS) - set(groups_seen))}, "
             f"Deployments of unknown groups {sorted(set(groups_seen) - set(GROUP_TOPICS))}")

    services = [d for _, d in by_kind.get("Service", [])]
    for group, name in groups_seen.items():
        labels = deployments[name][1]["spec"]["template"]["metadata"]["labels"]
        matching = [s for s in services
                    if s["spec"].get("selector") and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())]
        c.expect(len(matching) == 1, f"{name}: exactly one Service selects its pods (found {len(matching)})")
        for service in matching:
            c.expect(any(p.get("targetPort") in ("metrics", 9464) for p in service["spec"]["ports"]),
                     f"Service {service['metadata']['name']}: targets the metrics port")

    scaled = [d for _, d in by_kind.get("ScaledObject", [])]
    targeted = {}
    for so in scaled:
        spec = so["spec"]
        target = spec["scaleTargetRef"]["name"]
        c.expect(target in deployments, f"ScaledObject {so['metadata']['name']}: no Deployment {target}")
        group = next((g for g, n in groups_seen.items() if n == target), None)
        targeted[group] = so
        if group is None or group not in facts.get("k8s_effective", {}):
            continue
        _, effective, extracted = facts["k8s_effective"][group]
        partitions = get(effective, "bus.partitions")
        group_id = f"{get(effective, 'groups.id_prefix', 'scoutstream')}-{group}"
        brokers = get(effective, "bus.kafka.brokers")
        c.expect(spec.get("maxReplicaCount") == partitions,
                 f"{target}: maxReplicaCount {spec.get('maxReplicaCount')} != bus.partitions {partitions}")
        c.expect(spec.get("minReplicaCount", 0) >= 1, f"{target}: minReplicaCount >= 1 (lag gauges, alerts)")
        topics, consumer_groups = [], set()
        for trigger in spec["triggers"]:
            if trigger["type"] != "kafka":
                continue
            meta = trigger["metadata"]
            c.expect(meta.get("consumerGroup") == group_id,
                     f"{target}: consumerGroup {meta.get('consumerGroup')} != {group_id}")
            c.expect(meta.get("bootstrapServers") == brokers,
                     f"{target}: bootstrapServers {meta.get('bootstrapServers')} != bus.kafka.brokers {brokers}")
            c.expect(meta.get("offsetResetPolicy") == "earliest",
                     f"{target}: offsetResetPolicy earliest, as the consumers (auto.offset.reset)")
            topics.append(meta.get("topic"))
            consumer_groups.add(meta.get("consumerGroup"))
        c.expect(sorted(topics) == sorted(GROUP_TOPICS.get(group, [])),
                 f"{target}: trigger topics {topics} != the group's topics {GROUP_TOPICS.get(group)}")
        c.expect(len(consumer_groups) == 1, f"{target}: one consumer group across its triggers")
        extracted["expect"].update({"partitions": spec.get("maxReplicaCount"),
                                    "brokers": next(iter(spec["triggers"]))["metadata"].get("bootstrapServers"),
                                    "group_ids": {group: sorted(consumer_groups)[0]} if consumer_groups else {}})
    c.expect(set(targeted) == set(GROUP_TOPICS),
             f"one ScaledObject per consumer group: groups without one {sorted(set(GROUP_TOPICS) - set(targeted))}")
    c.note("per group: Deployment (startup/liveness /healthz and readiness /readyz on the observe.bind port, non-root uid = the "
           "image's, read-only root fs, requests/limits, scrape annotations), Service, ScaledObject "
           "(consumer group, topics, brokers, maxReplicaCount = bus.partitions)")


def tomllib_dump_source(configmaps, volume, config_path):
    cm = configmaps.get(volume.get("configMap", {}).get("name"), {})
    return (cm.get("data") or {}).get(os.path.basename(config_path))


