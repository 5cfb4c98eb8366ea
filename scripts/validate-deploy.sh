#!/usr/bin/env bash
# Validates the deployment files without a container engine or a cluster:
# Dockerfile and .dockerignore, docker-compose.yml and deploy/compose/, the
# Kubernetes manifests in deploy/kubernetes/, and their agreement with the
# code (topics, groups, config keys, ports, health endpoints). It prints what
# it checked, what it skipped and why, and what no check here can exercise.
# Exits non-zero on any failure.
#
# Tools come from PyPI into a cached virtualenv ($SCOUTSTREAM_CACHE_DIR, by
# default ~/.cache/scoutstream, /venv); python3 itself from Debian when it is
# missing and this runs as root. Optional tools are used when present:
# `docker compose` (config -q), promtool, kubectl (kustomize), shellcheck, cargo.
#
# SCOUTSTREAM_DEPLOY_EXTRACT=DIR also writes DIR/deploy.json: every config a
# deployed `scoutstream` process would load (file + SCOUTSTREAM__ variables)
# and every health probe command, for cli/tests/deploy_files.rs to load with
# the real config code and to run against the real binary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${SCOUTSTREAM_CACHE_DIR:-$HOME/.cache/scoutstream}"
VENV="$CACHE_DIR/venv"
LOG="$CACHE_DIR/validate-deploy-install.log"
# Pinned: the schemas they ship are part of what is checked.
REQUIREMENTS=(
  "PyYAML==6.0.3"
  "jsonschema==4.26.0"
  "dockerfile-parse==2.0.1"
  "kubernetes-validate==1.37.0"
  "check-jsonschema==0.39.0"
  'tomli==2.2.1; python_version < "3.11"'
)

say() { printf 'validate-deploy: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

mkdir -p "$CACHE_DIR"
: >"$LOG"

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    return 1
  fi
  say "installing $* (apt)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } \
    >>"$LOG" 2>&1
}

find_python() {
  local candidate
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null \
      && "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
      PYTHON="$candidate"
      return 0
    fi
  done
  if apt_install python3 python3-venv; then
    PYTHON=python3
    return 0
  fi
  die "python3 (3.9 or newer) is required and could not be installed: install python3 and python3-venv, then run again (log: $LOG)"
}

ensure_venv() {
  local stamp="$VENV/.scoutstream-requirements" wanted
  wanted="$(printf '%s\n' "${REQUIREMENTS[@]}")"
  if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] \
    && "$VENV/bin/python" -c 'import yaml, jsonschema, dockerfile_parse, kubernetes_validate, check_jsonschema' 2>/dev/null; then
    return 0
  fi
  find_python
  say "preparing the validation tools in $VENV (PyPI, once per machine)"
  if ! "$PYTHON" -m venv --clear "$VENV" >>"$LOG" 2>&1; then
    # Debian's python3 without ensurepip.
    apt_install python3-venv || true
    "$PYTHON" -m venv --clear "$VENV" >>"$LOG" 2>&1 \
      || die "cannot create a virtualenv with $PYTHON: install python3-venv, then run again (log: $LOG)"
  fi
  if ! PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    "$VENV/bin/python" -m pip install --quiet "${REQUIREMENTS[@]}" >>"$LOG" 2>&1; then
    tail -n 20 "$LOG" >&2
    die "could not install ${REQUIREMENTS[*]} from PyPI (log: $LOG)"
  fi
  printf '%s\n' "$wanted" >"$stamp"
}

# One installer at a time (tests may run this concurrently).
if command -v flock >/dev/null; then
  exec 9>"$CACHE_DIR/venv.lock"
  flock 9
fi
ensure_venv
if command -v flock >/dev/null; then
  flock -u 9
fi

exec "$VENV/bin/python" - "$ROOT" <<'PY'
"""The checks. Each prints `ok`, `FAIL` or `skip` with what it covered."""

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


# ------------------------------------------------------------ .dockerignore

def _glob_to_regex(pattern):
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i)
            if end == -1:
                out += re.escape(c)
            else:
                out += pattern[i:end + 1].replace("\\", "\\\\")
                i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules():
    rules = []
    if not DOCKERIGNORE.exists():
        return rules
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = os.path.normpath(pattern).lstrip("/")
        rules.append((negate, _glob_to_regex(pattern)))
    return rules


def ignored(relpath, rules):
    """Docker's rule: a path is out when the last matching pattern (on it or a parent) excludes it."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return excluded


def context_files(rules):
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel_dir = os.path.relpath(dirpath, ROOT)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for d in dirnames:
            path = f"{rel_dir}/{d}" if rel_dir else d
            # Excluded directories are pruned unless an exception may re-include inside.
            if ignored(path, rules) and not any(neg for neg, _ in rules):
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            path = f"{rel_dir}/{name}" if rel_dir else name
            if not ignored(path, rules):
                files.append(path)
    return files


# ------------------------------------------------------------ the Dockerfile

def dockerfile_stages():
    parser = DockerfileParser(path=str(DOCKERFILE))
    stages = []
    for instr in parser.structure:
        if instr["instruction"] == "FROM":
            words = instr["value"].split()
            words = [w for w in words if not w.startswith("--platform")]
            image = words[0]
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append({"image": image, "alias": alias, "instructions": []})
        elif stages:
            stages[-1]["instructions"].append(instr)
    return parser, stages


def exec_form(value):
    value = value.strip()
    if value.startswith("["):
        return json.loads(value)
    return None


def copy_parts(value):
    words = value.split()
    flags = [w for w in words if w.startswith("--")]
    rest = [w for w in words if not w.startswith("--")]
    if value.strip().startswith("["):
        rest = json.loads(value[value.index("["):])
    return flags, rest[:-1], rest[-1]


def check_dockerfile(c):
    parser, stages = dockerfile_stages()
    facts["dockerfile_stages"] = stages
    c.expect(len(stages) >= 2, f"multi-stage: found {len(stages)} FROM")
    aliases = [s["alias"] for s in stages]
    for stage in stages:
        image = stage["image"]
        if image in aliases:
            continue
        c.expect(":" in image.split("/")[-1] or "@" in image, f"FROM {image}: pin a tag")
        c.expect(not image.endswith(":latest"), f"FROM {image}: not :latest")
    c.expect(any(s["image"].startswith("rust:1-bookworm") for s in stages[:-1]),
             "a builder stage FROM rust:1-bookworm")
    final = stages[-1]
    c.expect(final["image"] == "debian:bookworm-slim", f"runtime FROM debian:bookworm-slim, not {final['image']}")
    for instr in parser.structure:
        if instr["instruction"] == "ADD":
            c.expect(not re.search(r"(https?|ftp)://|git@", instr["value"]),
                     f"line {instr['startline'] + 1}: ADD of a URL")
            c.problems.append(f"line {instr['startline'] + 1}: use COPY, not ADD")
        if instr["instruction"] == "RUN" and "apt-get install" in instr["value"]:
            c.expect("--no-install-recommends" in instr["value"],
                     f"line {instr['startline'] + 1}: apt-get install without --no-install-recommends")
            c.expect("rm -rf /var/lib/apt/lists" in instr["value"],
                     f"line {instr['startline'] + 1}: apt lists not removed in the same layer")
    by = {}
    for instr in final["instructions"]:
        by.setdefault(instr["instruction"], []).append(instr)
    users = by.get("USER", [])
    if c.expect(users, "runtime stage sets USER"):
        user = users[-1]["value"].split(":")[0]
        c.expect(user not in ("root", "0"), f"runtime USER is {user}")
        if c.expect(user.isdigit(), f"runtime USER {user!r} is not numeric (Kubernetes runAsNonRoot needs a uid)"):
            facts["image_uid"] = int(user)
    exposed = " ".join(i["value"] for i in by.get("EXPOSE", [])).split()
    c.expect("9464" in [p.split("/")[0] for p in exposed], f"EXPOSE 9464 (found {exposed})")
    entry = by.get("ENTRYPOINT", [])
    entry_argv = exec_form(entry[-1]["value"]) if entry else None
    c.expect(entry_argv in (["scoutstream"], ["/usr/local/bin/scoutstream"]),
             f"ENTRYPOINT [\"scoutstream\"] in exec form (found {entry_argv})")
    cmd = by.get("CMD", [])
    c.expect(cmd and exec_form(cmd[-1]["value"]) == ["run"], "CMD [\"run\"] in exec form")
    copies_binary = False
    for instr in by.get("COPY", []):
        flags, sources, dest = copy_parts(instr["value"])
        if any(f.startswith("--from=") for f in flags) and dest.endswith("scoutstream"):
            copies_binary = True
    c.expect(copies_binary, "runtime stage copies the scoutstream binary from a build stage")
    builds = [i["value"] for s in stages[:-1] for i in s["instructions"]
              if i["instruction"] == "RUN" and "cargo build" in i["value"]]
    c.expect(len(builds) >= 2, "a dependency-only cargo build before the full one (cached layer)")
    for value in builds:
        c.expect("--release" in value and "--locked" in value and "-p scoutstream" in value,
                 f"cargo build --release --locked -p scoutstream: {value[:80]}")
    health = by.get("HEALTHCHECK", [])
    if health:
        value = health[-1]["value"]
        c.expect("/healthz" in value and "9464" in value, "HEALTHCHECK asks /healthz on 9464")
        argv = exec_form(value[value.index("CMD") + 3:]) if "CMD" in value else None
        if c.expect(argv is not None, "HEALTHCHECK CMD in exec form"):
            extract["probes"].append({"origin": "Dockerfile HEALTHCHECK", "argv": argv, "port": 9464,
                                      "path": "/healthz"})
        c.note("HEALTHCHECK: bash /dev/tcp GET /healthz (run against the real binary by cli/tests/deploy_files.rs)")
    copies = {}
    for instr in final["instructions"]:
        if instr["instruction"] == "COPY":
            flags, sources, dest = copy_parts(instr["value"])
            if not any(f.startswith("--from=") for f in flags):
                for source in sources:
                    copies[dest] = source
    facts["runtime_copies"] = copies
    c.note(f"{len(stages)} stages: " + ", ".join(f"{s['alias'] or '-'}={s['image']}" for s in stages)
           + f"; runtime USER {facts.get('image_uid')}, EXPOSE {' '.join(exposed)}")


def check_build_context(c):
    rules = dockerignore_rules()
    c.expect(rules, ".dockerignore exists and has rules")
    files = set(context_files(rules))
    facts["context_files"] = files
    c.expect(not any(f.startswith("target/") for f in files), "target/ is out of the build context")
    c.expect(not any(f.startswith(".git/") for f in files), ".git/ is out of the build context")
    _, stages = dockerfile_stages()
    for stage in stages:
        for instr in stage["instructions"]:
            if instr["instruction"] != "COPY":
                continue
            flags, sources, _ = copy_parts(instr["value"])
            if any(f.startswith("--from=") for f in flags):
                continue
            for source in sources:
                if source in (".", "./"):
                    continue
                source = source.rstrip("/")
                c.expect(source in files or any(f.startswith(source + "/") for f in files),
                         f"COPY {source}: missing from the build context (or excluded by .dockerignore)")
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = manifest["workspace"]["members"]
    c.expect("Cargo.lock" in files, "Cargo.lock is in the build context")
    compiled_in = 0
    for member in members:
        c.expect(f"{member}/Cargo.toml" in files, f"{member}/Cargo.toml is in the build context")
        src = ROOT / member / "src"
        for path in src.rglob("*.rs"):
            rel_path = path.relative_to(ROOT).as_posix()
            c.expect(rel_path in files, f"{rel_path} is in the build context")
            text = path.read_text(encoding="utf-8", errors="replace")
            for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)', text):
                target = os.path.normpath(os.path.join(os.path.dirname(rel_path), m.group(1)))
                compiled_in += 1
                c.expect(target in files, f"{rel_path} includes {target}: not in the build context")
            for m in re.finditer(r'migrate!\(\s*(?:"([^"]+)")?\s*\)', text):
                target = os.path.normpath(os.path.join(member, m.group(1) or "migrations"))
                compiled_in += 1
                c.expect(any(f.startswith(target + "/") for f in files),
                         f"{rel_path} embeds migrations {target}: not in the build context")
    c.note(f"{len(files)} files in the context; {compiled_in} include_str!/include_bytes!/migrate! "
           "targets of the workspace crates are in it")


def check_planner_skeleton(c):
    """Run the planner stage's RUN on a copy of the build context; cargo must accept the result."""
    _, stages = dockerfile_stages()
    planner = next((s for s in stages if s["alias"] == "planner"), None)
    if planner is None:
        raise Skip("no `planner` stage")
    runs = [i["value"] for i in planner["instructions"] if i["instruction"] == "RUN"]
    c.expect(len(runs) == 1, "the planner stage has one RUN")
    if not have("cargo"):
        raise Skip("cargo not installed")
    files = facts.get("context_files") or set(context_files(dockerignore_rules()))
    with tempfile.TemporaryDirectory() as tmp:
        src, skeleton = pathlib.Path(tmp, "src"), pathlib.Path(tmp, "skeleton")
        for f in files:
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
        script = runs[0].replace("/skeleton", str(skeleton))
        done = sh(["/bin/sh", "-c", script], cwd=src)
        if not c.expect(done.returncode == 0, f"planner RUN failed: {done.stderr.strip()[-400:]}"):
            return
        real = sh(["cargo", "metadata", "--no-deps", "--offline", "--format-version", "1"], cwd=ROOT)
        if not c.expect(real.returncode == 0, f"cargo metadata (repo): {real.stderr.strip()[-300:]}"):
            return
        built_kinds = {"lib", "rlib", "bin", "proc-macro", "custom-build"}
        needed = []
        for package in json.loads(real.stdout)["packages"]:
            for target in package["targets"]:
                if built_kinds & set(target["kind"]):
                    needed.append(pathlib.Path(target["src_path"]).resolve().relative_to(ROOT))
        for path in needed:
            c.expect((skeleton / path).exists(), f"skeleton lacks {path}: the dependency build would fail")
        locked = sh(["cargo", "metadata", "--locked", "--offline", "--format-version", "1"], cwd=skeleton)
        if locked.returncode == 0:
            c.note(f"planner RUN (/bin/sh) made a skeleton with {len(needed)} crate roots; "
                   "`cargo metadata --locked` accepts it with the repo's Cargo.lock")
        elif "offline" in locked.stderr or "download" in locked.stderr:
            c.note("`cargo metadata --locked` skipped: crates not in the local cache (offline)")
        else:
            c.problems.append(f"skeleton: cargo metadata --locked: {locked.stderr.strip()[-400:]}")


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
PY
