"""Validates the Kubernetes manifests without a cluster: renders every overlay with
`kubectl kustomize`, validates each object against the Kubernetes schemas (kubernetes-validate,
strict: unknown fields are errors), and checks what schemas cannot see:

- every StatefulSet has its headless Service, and its selector matches its pod labels;
- every Service and PodDisruptionBudget selects the pods of some workload;
- every Service targetPort is a port (by name or number) of the pods it selects, and every
  probe port a port of its container;
- the bookie has both its `journal` and `ledgers` claims, mounted;
- every flag a container passes to `magnetar` is one the binary accepts (`magnetar <sub> --help`);
- the etcd member count given to the start-up script equals the StatefulSet's replicas;
- an HPA scales a workload that exists; no ConfigMap key looks like a secret.

Usage: check.py MAGNETAR_BINARY   (from the repository's root)
"""

import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

K8S_VERSION = "1.30.0"
OVERLAYS = sorted(p for p in Path("deploy/kubernetes/overlays").iterdir() if p.is_dir())
WORKLOADS = {"StatefulSet", "Deployment", "DaemonSet"}
errors = []


def fail(overlay, msg):
    errors.append(f"{overlay.name}: {msg}")


def render(overlay):
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True)
    if out.returncode != 0:
        fail(overlay, f"kubectl kustomize failed: {out.stderr.strip()}")
        return []
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


_help = {}


def flags_of(binary, words):
    key = tuple(words)
    if key not in _help:
        out = subprocess.run([binary, *words, "--help"], capture_output=True, text=True)
        if out.returncode != 0:
            _help[key] = None
        else:
            _help[key] = set(re.findall(r"(--[a-z0-9-]+)", out.stdout))
    return _help[key]


def check_magnetar_args(overlay, name, argv, binary):
    """argv as the container passes it to `magnetar`: subcommands, then flags."""
    words = []
    for a in argv:
        if a.startswith("-"):
            break
        words.append(a)
    # subcommands must exist: `magnetar <words> --help` succeeds
    known = flags_of(binary, words)
    if known is None:
        fail(overlay, f"{name}: `magnetar {' '.join(words)}` is not a command of the binary")
        return
    i = len(words)
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            flag = a.split("=", 1)[0]
            if flag not in known:
                fail(overlay, f"{name}: `magnetar {' '.join(words)}` has no flag {flag}")
        elif not a.startswith("-"):
            # a subcommand after global flags (`admin --admin-url=… brokers shutdown`)
            rest = [w for w in argv[i:] if not w.startswith("-")]
            if flags_of(binary, words + rest) is None:
                fail(overlay, f"{name}: `magnetar {' '.join(words + rest)}` is not a command")
            return
        i += 1


def check(overlay, docs, binary):
    for d in docs:
        try:
            kubernetes_validate.validate(d, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(overlay, f"{d['kind']}/{d['metadata']['name']}: schema: {e.message}")
        except Exception as e:  # an unknown kind/version is a failure too
            fail(overlay, f"{d['kind']}/{d['metadata']['name']}: schema: {e}")

    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    services = by_kind.get("Service", [])
    pods = {w["metadata"]["name"]: w["spec"]["template"] for w in workloads}

    for w in workloads:
        name = f"{w['kind']}/{w['metadata']['name']}"
        labels = w["spec"]["template"]["metadata"].get("labels", {})
        if not selects(w["spec"]["selector"].get("matchLabels"), labels):
            fail(overlay, f"{name}: selector does not match the pod template's labels")
        if w["kind"] == "StatefulSet":
            svc = [s for s in services if s["metadata"]["name"] == w["spec"].get("serviceName")]
            if not svc or svc[0]["spec"].get("clusterIP") != "None":
                fail(overlay, f"{name}: no headless Service named {w['spec'].get('serviceName')!r}")
            elif not selects(svc[0]["spec"].get("selector"), labels):
                fail(overlay, f"{name}: its headless Service does not select its pods")
        spec = w["spec"]["template"]["spec"]
        for c in spec["containers"]:
            ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                p = c.get(probe) or {}
                port = (p.get("httpGet") or p.get("tcpSocket") or {}).get("port")
                if port is not None and port not in ports:
                    fail(overlay, f"{name}: {probe} port {port!r} is not a port of container {c['name']}")
            mounts = {m["name"] for m in c.get("volumeMounts", [])}
            volumes = {v["name"] for v in spec.get("volumes", [])} | \
                {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
            for m in mounts - volumes:
                fail(overlay, f"{name}: mounts {m!r}, which is neither a volume nor a claim")
            if c["image"].split(":")[0].endswith("magnetar"):
                check_magnetar_args(overlay, name, c.get("args", []), binary)
                hook = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command")
                if hook:
                    if hook[0] != "magnetar":
                        fail(overlay, f"{name}: preStop does not run magnetar")
                    else:
                        check_magnetar_args(overlay, f"{name} preStop", hook[1:], binary)
            for e in c.get("env", []):
                if e["name"] == "ETCD_MEMBERS" and int(e["value"]) != w["spec"]["replicas"]:
                    fail(overlay, f"{name}: ETCD_MEMBERS={e['value']} but replicas={w['spec']['replicas']}")
        if w["metadata"]["name"] == "bookie":
            claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
            if not {"journal", "ledgers"} <= claims:
                fail(overlay, f"{name}: needs both journal and ledgers claims, has {sorted(claims)}")

    for s in services:
        name = f"Service/{s['metadata']['name']}"
        chosen = [t for t in pods.values() if selects(s["spec"].get("selector"), t["metadata"].get("labels", {}))]
        if not chosen:
            fail(overlay, f"{name}: selects no workload's pods")
            continue
        for port in s["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for t in chosen:
                names = {p.get("name") for c in t["spec"]["containers"] for p in c.get("ports", [])}
                numbers = {p["containerPort"] for c in t["spec"]["containers"] for p in c.get("ports", [])}
                if target not in names and target not in numbers:
                    fail(overlay, f"{name}: targetPort {target!r} is not a containerPort of the pods it selects")

    for pdb in by_kind.get("PodDisruptionBudget", []):
        sel = pdb["spec"]["selector"].get("matchLabels")
        if not any(selects(sel, t["metadata"].get("labels", {})) for t in pods.values()):
            fail(overlay, f"PodDisruptionBudget/{pdb['metadata']['name']}: selects no workload")

    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        if not any(w["kind"] == ref["kind"] and w["metadata"]["name"] == ref["name"] for w in workloads):
            fail(overlay, f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: no {ref['kind']}/{ref['name']}")

    for cm in by_kind.get("ConfigMap", []):
        for k, v in (cm.get("data") or {}).items():
            text = f"{k}\n{v}"
            if re.search(r"(?i)(password|secret|token|private[_-]?key)\s*[=:]", text):
                fail(overlay, f"ConfigMap/{cm['metadata']['name']}: {k} looks like it holds a secret")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check.py MAGNETAR_BINARY")
    binary = sys.argv[1]
    for overlay in OVERLAYS:
        docs = render(overlay)
        check(overlay, docs, binary)
        kinds = sorted({d["kind"] for d in docs})
        print(f"kubernetes: {overlay.name}: {len(docs)} objects rendered and checked ({', '.join(kinds)})")
    if errors:
        print("\n".join(f"kubernetes: FAIL {e}" for e in errors))
        sys.exit(1)
    print(f"kubernetes: {len(OVERLAYS)} overlays valid")


if __name__ == "__main__":
    main()
