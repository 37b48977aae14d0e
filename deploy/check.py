#!/usr/bin/env python3
"""Checks every deployment file the way the tools that consume them would.

Run by `cargo xtask deploy-check` (inside a venv with kubernetes-validate and jsonpatch):
- every Kubernetes manifest, and every overlay rendered on its base, validates strictly against
  the Kubernetes 1.37 schemas (a deliberately misspelt field must fail, so the check can fail);
- the PrometheusRule of the Operator overlay holds exactly deploy/prometheus/nodetel-rules.yaml
  (`--write` regenerates it);
- `promtool check rules`, `promtool test rules`, and `promtool check config` on the example
  configuration;
- `docker-compose config` on the Compose and Swarm files;
- the DaemonSet's pod described for the image test (target/deploy/daemonset-pod.json),
  refusing any field it does not translate.
Exit status 1 on the first class of failure, with every failure printed.
"""
import copy
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import jsonpatch
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent
K8S_VERSION = "1.37.0"
# Kinds of the Prometheus Operator: not in the Kubernetes schemas, checked on their own below.
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}

failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL {msg}")


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def render(kdir):
    """The resources of a kustomization, with the features these files use: resources (files and
    bases), namespace, images, and inline JSON 6902 patches. Anything else is refused, so a new
    kustomize feature cannot slip past the check unrendered."""
    k = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
    unknown = set(k) - known
    if unknown:
        raise ValueError(f"{kdir}: kustomization fields this check cannot render: {unknown}")
    docs = []
    for r in k.get("resources", []):
        p = kdir / r
        docs.extend(render(p) if p.is_dir() else load_all(p))
    if "namespace" in k:
        for d in docs:
            if d.get("kind") not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
                d.setdefault("metadata", {})["namespace"] = k["namespace"]
    for img in k.get("images", []):
        for d in docs:
            for c in pod_containers(d):
                if c.get("image", "").split(":")[0] == img["name"]:
                    c["image"] = f"{img.get('newName', img['name'])}:{img['newTag']}"
    for p in k.get("patches", []):
        t = p["target"]
        ops = yaml.safe_load(p["patch"])
        hit = [
            i
            for i, d in enumerate(docs)
            if d.get("kind") == t["kind"] and d["metadata"]["name"] == t["name"]
        ]
        if len(hit) != 1:
            raise ValueError(f"{kdir}: patch target {t} matches {len(hit)} resources")
        docs[hit[0]] = jsonpatch.apply_patch(docs[hit[0]], ops)
    return docs


def pod_containers(doc):
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def validate(doc, where):
    if doc.get("kind") in OPERATOR_KINDS:
        return
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        fail(f"{where}: {doc.get('kind')}/{doc['metadata'].get('name')}: {e.message} at {list(e.path)}")


def check_kubernetes():
    kdirs = sorted(p.parent for p in (ROOT / "kubernetes").rglob("kustomization.yaml"))
    for kdir in kdirs:
        rel = kdir.relative_to(ROOT.parent)
        docs = render(kdir)
        for d in docs:
            validate(d, str(rel))
        print(f"ok   {rel}: {len(docs)} resources rendered and validated")
        # Every manifest in the directory is listed: a file left out would never be applied.
        listed = set(yaml.safe_load((kdir / "kustomization.yaml").read_text()).get("resources", []))
        for f in kdir.glob("*.yaml"):
            if f.name != "kustomization.yaml" and f.name not in listed:
                fail(f"{rel}/{f.name} is not in its kustomization's resources")
    # The check must be able to fail: a misspelt field in the DaemonSet is refused.
    ds = next(d for d in render(ROOT / "kubernetes/base") if d["kind"] == "DaemonSet")
    broken = copy.deepcopy(ds)
    broken["spec"]["template"]["spec"]["hostPIDs"] = True
    try:
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
        fail("strict validation accepted a misspelt DaemonSet field")
    except kubernetes_validate.ValidationError:
        print("ok   strict validation refuses a misspelt field")


class Literal(str):
    pass


def literal_presenter(dumper, data):
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")


yaml.SafeDumper.add_representer(Literal, literal_presenter)


def as_literals(node):
    if isinstance(node, dict):
        return {k: as_literals(v) for k, v in node.items()}
    if isinstance(node, list):
        return [as_literals(v) for v in node]
    if isinstance(node, str) and "\n" in node:
        return Literal(node)
    return node


def check_prometheus_rule(write):
    rules = yaml.safe_load((ROOT / "prometheus/nodetel-rules.yaml").read_text())
    path = ROOT / "kubernetes/prometheus-operator/prometheusrule.yaml"
    want = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "nodetel",
            "namespace": "nodetel",
            "labels": {"app.kubernetes.io/name": "nodetel"},
        },
        "spec": rules,
    }
    if write:
        header = (
            "# Generated from deploy/prometheus/nodetel-rules.yaml by `cargo xtask deploy-check"
            " --write`;\n# the check fails when the two differ.\n"
        )
        body = yaml.safe_dump(as_literals(want), sort_keys=False, width=100)
        path.write_text(header + body)
    have = yaml.safe_load(path.read_text())
    if have != want:
        fail(f"{path.relative_to(ROOT.parent)} differs from nodetel-rules.yaml: run `cargo xtask deploy-check --write`")
    else:
        print("ok   PrometheusRule holds nodetel-rules.yaml")


def run(cmd, cwd, what, ok_codes=(0,)):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode not in ok_codes:
        fail(f"{what}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return False
    print(f"ok   {what}")
    return True


def check_promtool():
    prom = ROOT / "prometheus"
    run(["promtool", "check", "rules", "nodetel-rules.yaml"], prom, "promtool check rules")
    run(["promtool", "test", "rules", "nodetel-rules.test.yaml"], prom, "promtool test rules")
    # Debian's promtool is built without Kubernetes service discovery: check the rest of the
    # configuration with the discovery swapped for a static target (relabelling, rule files).
    cfg = yaml.safe_load((prom / "prometheus.yml").read_text())
    for job in cfg["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(prom / "nodetel-rules.yaml", tmp)
        (pathlib.Path(tmp) / "prometheus.yml").write_text(yaml.safe_dump(cfg))
        run(["promtool", "check", "config", "prometheus.yml"], tmp, "promtool check config (kubernetes_sd as static)")


def check_compose():
    files = sorted((ROOT / "docker").glob("*.yml"))
    if not files:
        fail("no Compose files in deploy/docker")
    for f in files:
        run(["docker-compose", "-f", f.name, "config", "-q"], f.parent, f"docker-compose config {f.name}")


# Pod fields that change nothing a test on one host could see. Any other field must be
# translated below, or the translation fails.
POD_ONLY = {
    "serviceAccountName",
    "automountServiceAccountToken",
    "priorityClassName",
    "tolerations",
    "terminationGracePeriodSeconds",
}
MEMORY_UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}


def pod_spec(ds, node_name):
    """The DaemonSet's pod as a runtime-neutral description, for the image test
    (tests/tests/image.rs), which runs it with containerd: arguments, environment, capabilities,
    security options, host paths, memory limit."""
    pod = ds["spec"]["template"]["spec"]
    out = {"host_pid": False, "host_network": False, "env": {}, "mounts": [], "caps_add": [],
           "caps_drop": [], "read_only": False, "no_new_privileges": False, "user": None,
           "seccomp": "Unconfined", "apparmor": "Unconfined", "memory_limit_bytes": None,
           "port": None, "health_path": None}
    for key, value in pod.items():
        if key in POD_ONLY or key in ("containers", "volumes"):
            continue
        if key == "hostPID":
            out["host_pid"] = bool(value)
        elif key == "hostNetwork":
            out["host_network"] = bool(value)
        else:
            raise ValueError(f"pod field {key} is not translated")
    (c,) = pod["containers"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for key, value in c.items():
        if key in ("name", "image", "imagePullPolicy"):
            continue
        if key == "args":
            out["args"] = value
        elif key == "env":
            for e in value:
                if "value" in e:
                    out["env"][e["name"]] = e["value"]
                elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
                    out["env"][e["name"]] = node_name
                else:
                    raise ValueError(f"env {e['name']} is not translated")
        elif key == "ports":
            (p,) = value
            out["port"] = p["containerPort"]
        elif key in ("startupProbe", "readinessProbe", "livenessProbe"):
            out["health_path"] = value["httpGet"]["path"]
        elif key == "resources":
            mem = value.get("limits", {}).get("memory")
            if mem:
                num, unit = mem[:-2], mem[-2:]
                out["memory_limit_bytes"] = int(num) * MEMORY_UNITS[unit]
        elif key == "securityContext":
            security(value, out)
        elif key == "volumeMounts":
            for m in value:
                host = volumes[m["name"]]["hostPath"]
                out["mounts"].append({
                    "source": host["path"],
                    "destination": m["mountPath"],
                    "read_only": bool(m.get("readOnly")),
                    # The kubelet makes these on the node when missing; the test does the same.
                    "create_directory": host.get("type") == "DirectoryOrCreate",
                    # The kubelet refuses to start the pod when these are missing; so does the test.
                    "must_exist": host.get("type") in ("Directory", "File"),
                })
        else:
            raise ValueError(f"container field {key} is not translated")
    return out


def security(sc, out):
    for key, value in sc.items():
        if key == "privileged":
            if value:
                raise ValueError("privileged: the manifests must not ask for it")
        elif key == "allowPrivilegeEscalation":
            out["no_new_privileges"] = not value
        elif key == "readOnlyRootFilesystem":
            out["read_only"] = bool(value)
        elif key == "runAsUser":
            out["user"] = value
        elif key == "runAsNonRoot":
            pass
        elif key == "capabilities":
            out["caps_drop"] = value.get("drop", [])
            out["caps_add"] = value.get("add", [])
        elif key == "seccompProfile":
            out["seccomp"] = value["type"]
        elif key == "appArmorProfile":
            out["apparmor"] = value["type"]
        else:
            raise ValueError(f"securityContext field {key} is not translated")


def write_pod_spec():
    ds = next(d for d in render(ROOT / "kubernetes/base") if d["kind"] == "DaemonSet")
    out = ROOT.parent / "target/deploy/daemonset-pod.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        spec = pod_spec(ds, "nodetel-image-test")
    except (ValueError, KeyError) as e:
        fail(f"DaemonSet pod for the image test: {e}")
        return
    out.write_text(json.dumps(spec, indent=2))
    print(f"ok   DaemonSet pod for the image test: {out.relative_to(ROOT.parent)}")


def main():
    write = "--write" in sys.argv[1:]
    check_kubernetes()
    write_pod_spec()
    check_prometheus_rule(write)
    check_promtool()
    check_compose()
    if failures:
        print(f"\n{len(failures)} failure(s)")
        sys.exit(1)
    print("\ndeploy: all checks passed")


if __name__ == "__main__":
    main()
