"""What every check shares: the checker, paths, YAML and TOML loading, config lookups."""

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

ROOT = pathlib.Path(sys.argv[1]).resolve()
EXTRACT = os.environ.get("SCOUTSTREAM_DEPLOY_EXTRACT")

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S_DIR = ROOT / "deploy" / "kubernetes"
REFERENCE_CONFIG = ROOT / "deploy" / "config" / "scoutstream.toml"

# The consumer groups and their topics: cli/src/app.rs (GroupName, GroupName::topics).
# cli/tests/deploy_files.rs passes the code's own list in SCOUTSTREAM_GROUP_TOPICS.
GROUP_TOPICS = {
    "enrich": ["matches"],
    "cache": ["matches", "players"],
    "persist": ["matches", "players"],
    "jobs": ["jobs"],
}
if os.environ.get("SCOUTSTREAM_GROUP_TOPICS"):
    GROUP_TOPICS = json.loads(os.environ["SCOUTSTREAM_GROUP_TOPICS"])
# Free-form config tables (any key is accepted by the code).
FREEFORM_TABLES = {("bus", "kafka", "client"), ("jobs", "rate_limits")}
# Kubernetes versions to validate against: the oldest and newest shipped >= this.
K8S_MIN_VERSION = (1, 29)

results = []  # (status, name, detail)
facts = {}  # shared between checks
extract = {"configs": [], "probes": []}


class Skip(Exception):
    pass


class Check:
    def __init__(self, name):
        self.name = name
        self.problems = []
        self.notes = []

    def expect(self, condition, message):
        if not condition:
            self.problems.append(message)
        return bool(condition)

    def note(self, message):
        self.notes.append(message)


def run(name, fn):
    check = Check(name)
    try:
        fn(check)
    except Skip as why:
        results.append(("skip", name, str(why)))
        print(f"skip  {name}: {why}", flush=True)
        return
    except Exception as err:  # a check that crashes is a failed check
        check.problems.append(f"{type(err).__name__}: {err}")
    if check.problems:
        results.append(("FAIL", name, check.problems))
        print(f"FAIL  {name}", flush=True)
        for problem in check.problems:
            print(f"        - {problem}", flush=True)
    else:
        results.append(("ok", name, check.notes))
        print(f"ok    {name}", flush=True)
        for note in check.notes:
            print(f"        {note}", flush=True)


def rel(path):
    try:
        return str(pathlib.Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def have(tool):
    return shutil.which(tool) is not None


def sh(argv, **kwargs):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kwargs)


# ---------------------------------------------------------------- YAML, TOML

class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (merge keys `<<` still work)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_all(path):
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.load_all(f, Loader=StrictLoader) if doc is not None]


def load_yaml(path):
    docs = load_yaml_all(path)
    if len(docs) != 1:
        raise ValueError(f"{rel(path)}: expected one YAML document, found {len(docs)}")
    return docs[0]


def toml_value(text):
    """As pipeline::config::apply_override: a TOML value when it parses as one, else the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def overlay(table, env):
    """The config a process sees: the file's table with SCOUTSTREAM__ variables applied."""
    table = copy.deepcopy(table)
    for name, value in env.items():
        if not name.startswith("SCOUTSTREAM__"):
            continue
        keys = [k.lower() for k in name[len("SCOUTSTREAM__"):].split("__")]
        current = table
        for key in keys[:-1]:
            current = current.setdefault(key, {})
        current[keys[-1]] = toml_value(str(value))
    return table


def unknown_keys(table, reference, path=()):
    """Keys of `table` that the reference config (which documents every key) lacks."""
    found = []
    for key, value in table.items():
        here = path + (key,)
        if path in FREEFORM_TABLES:
            continue
        if key not in reference:
            found.append(".".join(here))
        elif isinstance(value, dict) and isinstance(reference[key], dict):
            found.extend(unknown_keys(value, reference[key], here))
    return found


def env_key_known(name, reference):
    keys = [k.lower() for k in name[len("SCOUTSTREAM__"):].split("__")]
    current = reference
    for i, key in enumerate(keys):
        if tuple(keys[:i]) in FREEFORM_TABLES:
            return True
        if not isinstance(current, dict) or key not in current:
            return False
        current = current[key]
    return True


def get(table, dotted, default=None):
    current = table
    for key in dotted.split("."):
        if not isinstance(current, dict) or key not in current:
            return default
        current = current[key]
    return current


def reference_config():
    """deploy/config/scoutstream.toml, with its commented-out keys (`# api_token = ...`) as documented keys."""
    text = REFERENCE_CONFIG.read_text()
    table = tomllib.loads(text)
    section = table
    for line in text.splitlines():
        header = re.match(r"^\s*\[([^\]]+)\]", line)
        if header:
            section = table
            for key in header.group(1).split("."):
                section = section.setdefault(key.strip().strip('"'), {})
            continue
        commented = re.match(r"^\s*#\s*([a-z_]+)\s*=", line)
        if commented:
            section.setdefault(commented.group(1), "")
    return table


def rust_topics():
    text = (ROOT / "schemas" / "src" / "topics.rs").read_text()
    return sorted(set(re.findall(r'pub const [A-Z_]+: &str = "([^"]+)";', text)))


def health_routes():
    text = (ROOT / "pipeline" / "src" / "observe" / "server.rs").read_text()
    return set(re.findall(r'\.route\("([^"]+)"', text))


def port_of(bind):
    return int(str(bind).rsplit(":", 1)[1])


