"""Validates the deployment artefacts offline with the real tools' libraries, then
checks the properties a real engine or cluster relies on.

  Dockerfile          hadolint: nothing at warning level or above
  docker-compose.yml  `docker compose config` (with .env.example), start order and health checks
  helm/orders         `helm lint --strict` and rendering with the default values and
                      with examples/production.yaml; every manifest through
                      `kubernetes-validate --strict`; probes, security context, hooks...

Run by scripts/test with the project's .venv Python. Exit code: pass or fail.
"""
import json
import os
import subprocess
import sys
import tempfile

import helm_python as helm
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
CHART = os.path.join(ROOT, "helm", "orders")
failures = []


def check(ok, message):
    if not ok:
        failures.append(message)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, **kw)


def dockerfile():
    r = run([os.path.join(BIN, "hadolint"), "--no-color", "--failure-threshold", "warning", "Dockerfile"])
    check(r.returncode == 0, f"hadolint:\n{r.stdout}{r.stderr}")
    text = open(os.path.join(ROOT, "Dockerfile")).read()
    check("cargo chef cook" in text, "Dockerfile: the dependency layer is cached with cargo-chef")
    final = text[text.rindex("\nFROM "):]
    check("USER 65532" in final, "Dockerfile: the runtime stage runs as a non-root user")
    check("orders-api" in final and "orders-worker" in final and "migrations" in final,
          "Dockerfile: both binaries and the migrations are in the runtime image")


def compose():
    r = run([os.path.join(BIN, "docker-compose"), "-f", "docker-compose.yml", "--env-file", ".env.example",
             "config", "--format", "json"])
    check(r.returncode == 0, f"docker compose config:\n{r.stderr}")
    if r.returncode != 0:
        return
    services = json.loads(r.stdout)["services"]
    for name in ["postgres", "temporal-postgres", "temporal-schema", "temporal", "temporal-namespace", "temporal-ui",
                 "migrate", "worker", "api"]:
        check(name in services, f"compose: no {name} service")
    check(all("auto-setup" not in s.get("image", "") for s in services.values()),
          "compose: no temporalio/auto-setup (deprecated): server + admin-tools")
    for name in ["postgres", "temporal-postgres", "temporal", "worker", "api"]:
        check("test" in services.get(name, {}).get("healthcheck", {}), f"compose: {name} has no health check")
    want = {
        "temporal-schema": {"temporal-postgres": "service_healthy"},
        "temporal": {"temporal-schema": "service_completed_successfully"},
        "temporal-namespace": {"temporal": "service_healthy"},
        "migrate": {"postgres": "service_healthy"},
        "worker": {"migrate": "service_completed_successfully", "temporal-namespace": "service_completed_successfully"},
        "api": {"migrate": "service_completed_successfully", "temporal-namespace": "service_completed_successfully"},
    }
    for service, deps in want.items():
        got = services.get(service, {}).get("depends_on", {})
        for dep, condition in deps.items():
            check(got.get(dep, {}).get("condition") == condition, f"compose: {service} waits for {dep} {condition}")
    # The server completes a stopping worker's polls (docs/deploying.md): its dynamic config file is mounted
    # where DYNAMIC_CONFIG_FILE_PATH points, and sets the key.
    temporal = services.get("temporal", {})
    dynamic = "/etc/temporal/" + temporal.get("environment", {}).get("DYNAMIC_CONFIG_FILE_PATH", "")
    mounted = {v.get("target"): v.get("source") for v in temporal.get("volumes", [])}
    check(dynamic in mounted, f"compose: temporal's dynamic config {dynamic} is not mounted")
    if dynamic in mounted:
        with open(mounted[dynamic]) as f:
            settings = yaml.safe_load(f)
        check(settings.get("frontend.enableCancelWorkerPollsOnShutdown") == [{"value": True}],
              "compose: temporal's dynamic config enables frontend.enableCancelWorkerPollsOnShutdown")
    api_ports = [p.get("target") for p in services.get("api", {}).get("ports", [])]
    check(8080 in api_ports, "compose: the API is on port 8080")
    for name in ["postgres", "temporal-postgres"]:
        vols = services.get(name, {}).get("volumes", [])
        check(any(v.get("type") == "volume" for v in vols), f"compose: {name} keeps its data in a named volume")
    check(services.get("temporal", {}).get("image", "").startswith("temporalio/"), "compose: an official Temporal image")


def manifests(values, label):
    lint = helm.lint(CHART, values, strict=True)
    bad = [m for m in lint["messages"] if m["severity"] >= 2] + lint["errors"]
    check(not bad, f"helm lint --strict ({label}): {bad}")
    rendered = helm.Chart.load(CHART).render(values, name="orders", namespace="shop", is_install=True)
    docs = []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            check("docs" in text, f"NOTES.txt ({label}) says where Swagger UI is")
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        # The Prometheus Operator's kinds have no schema here (kubernetes-validate knows
        # only the built-in ones): they are checked by `monitoring` below instead.
        for i, doc in enumerate(d for d in docs if d["apiVersion"] != "monitoring.coreos.com/v1"):
            f = os.path.join(tmp, f"{i:02d}-{doc['kind']}.yaml")
            with open(f, "w") as out:
                yaml.safe_dump(doc, out)
            files.append(f)
        r = run([os.path.join(BIN, "kubernetes-validate"), "--strict", "--quiet", *files])
        check(r.returncode == 0, f"kubernetes-validate --strict ({label}):\n{r.stdout}{r.stderr}")
    return docs


def find(docs, kind, suffix):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    return found[0] if found else None


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def chart(values, label, production):
    docs = manifests(values, label)
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    for kind, suffix in [("Deployment", "-api"), ("Deployment", "-worker"), ("Service", "-api"),
                         ("HorizontalPodAutoscaler", "-api"), ("HorizontalPodAutoscaler", "-worker"),
                         ("PodDisruptionBudget", "-api"), ("PodDisruptionBudget", "-worker"),
                         ("Job", "-migrations"), ("ConfigMap", "orders"), ("ServiceAccount", "orders")]:
        check(find(docs, kind, suffix) is not None, f"{label}: no {kind} *{suffix} in {kinds}")
    check((find(docs, "Ingress", "-api") is not None) == production, f"{label}: Ingress only when enabled")
    for suffix, grace_env in [("-api", "ORDERS_SHUTDOWN_GRACE"), ("-worker", "ORDERS_SHUTDOWN_GRACE")]:
        dep = find(docs, "Deployment", suffix)
        if not dep:
            continue
        pod = dep["spec"]["template"]
        spec = pod["spec"]
        c = spec["containers"][0]
        for probe in ["livenessProbe", "readinessProbe"]:
            check(probe in c, f"{label}: {suffix} has no {probe}")
        path = c.get("readinessProbe", {}).get("httpGet", {}).get("path")
        check(path == "/readyz", f"{label}: {suffix} readiness is /readyz, not {path}")
        check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", f"{label}: {suffix} liveness /healthz")
        sc = c.get("securityContext", {})
        check(sc.get("readOnlyRootFilesystem") is True, f"{label}: {suffix} root filesystem is read-only")
        check(sc.get("allowPrivilegeEscalation") is False, f"{label}: {suffix} no privilege escalation")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{label}: {suffix} drops all capabilities")
        check(spec.get("securityContext", {}).get("runAsNonRoot") is True, f"{label}: {suffix} runs as non-root")
        check("checksum/config" in pod["metadata"].get("annotations", {}), f"{label}: {suffix} rolls on config changes")
        check("resources" in c and "requests" in c["resources"], f"{label}: {suffix} has resource requests")
        grace = int(env_of(c)[grace_env]["value"].rstrip("s"))
        check(spec["terminationGracePeriodSeconds"] > grace,
              f"{label}: {suffix} terminationGracePeriodSeconds must exceed its own drain ({grace}s)")
    # Each process gets only the secrets it reads: the worker no JWT secret.
    for suffix, wanted, absent in [("-api", {"DATABASE_URL", "ORDERS_VERIFICATION_KEY", "ORDERS_JWT_SECRET"}, "ORDERS_SMTP_URL"),
                                   ("-worker", {"DATABASE_URL", "ORDERS_VERIFICATION_KEY"}, "ORDERS_JWT_SECRET")]:
        dep = find(docs, "Deployment", suffix)
        if not dep:
            continue
        c = dep["spec"]["template"]["spec"]["containers"][0]
        from_secret = {e["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
        check(wanted <= from_secret and absent not in from_secret, f"{label}: {suffix} secrets {sorted(from_secret)}")
        check(all("secretRef" not in s for s in c.get("envFrom", [])), f"{label}: {suffix} takes no whole Secret")
    job = find(docs, "Job", "-migrations")
    if job:
        hooks = job["metadata"].get("annotations", {}).get("helm.sh/hook", "")
        check(set(hooks.split(",")) == {"pre-install", "pre-upgrade"}, f"{label}: migration Job hooks are {hooks!r}")
        c = job["spec"]["template"]["spec"]["containers"][0]
        check(c.get("command") == ["orders-api", "migrate"], f"{label}: the Job runs orders-api migrate")
        check(c.get("securityContext", {}).get("readOnlyRootFilesystem") is True, f"{label}: the Job is locked down too")
    worker = find(docs, "Deployment", "-worker")
    if worker and production:
        env = env_of(worker["spec"]["template"]["spec"]["containers"][0])
        check(env.get("TEMPORAL_TLS", {}).get("value") == "true", f"{label}: TLS to Temporal")
        check("secretKeyRef" in env.get("TEMPORAL_API_KEY", {}).get("valueFrom", {}), f"{label}: API key from a Secret")
    if production:
        ing = find(docs, "Ingress", "-api")
        paths = [p["path"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]] if ing else []
        check("/metrics" not in paths and "/" not in paths, f"{label}: the Ingress does not expose /metrics")
        # Every public route reaches the API: each documented path, the problem pages and the console.
        with open(os.path.join(ROOT, "openapi", "openapi.json")) as f:
            public = {"/" + p.strip("/").split("/")[0] for p in json.load(f)["paths"]} | {"/problems", "/console"}
        public -= {"/healthz", "/readyz"}  # probed in the cluster, not from outside
        check(public <= set(paths), f"{label}: the Ingress does not route {sorted(public - set(paths))}")


def monitoring():
    values = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                          "grafanaDashboard": {"enabled": True}},
              "extraVolumes": [{"name": "jwks", "configMap": {"name": "idp-jwks"}}],
              "extraVolumeMounts": [{"name": "jwks", "mountPath": "/etc/orders/jwks", "readOnly": True}]}
    docs = manifests(values, "monitoring and extra volumes")
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    check(len(monitors) == 2, f"monitoring: a ServiceMonitor for the API and the worker, got {len(monitors)}")
    services = [d for d in docs if d["kind"] == "Service"]
    for m in monitors:
        wanted = m["spec"]["selector"]["matchLabels"]
        hits = [s for s in services if all(s["metadata"]["labels"].get(k) == v for k, v in wanted.items())]
        check(len(hits) == 1 and any(p["name"] == "metrics" for p in hits[0]["spec"]["ports"]),
              f"monitoring: {m['metadata']['name']} selects exactly one Service with a metrics port")
        job = hits[0]["metadata"]["labels"].get(m["spec"]["jobLabel"]) if hits else None
        check(job in ("orders-api", "orders-worker"), f"monitoring: job label {job!r}")
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    with open(os.path.join(CHART, "files", "prometheus-rules.yml")) as f:
        source = yaml.safe_load(f)
    check(len(rules) == 1 and rules[0]["spec"]["groups"] == source["groups"],
          "monitoring: the PrometheusRule carries files/prometheus-rules.yml unchanged")
    dashboard = find(docs, "ConfigMap", "-dashboard")
    with open(os.path.join(CHART, "files", "grafana-dashboard.json")) as f:
        check(dashboard is not None and json.loads(dashboard["data"]["orders.json"]) == json.load(f),
              "monitoring: the dashboard ConfigMap carries files/grafana-dashboard.json unchanged")
    for suffix in ["-api", "-worker"]:
        spec = find(docs, "Deployment", suffix)["spec"]["template"]["spec"]
        check(any(v["name"] == "jwks" for v in spec["volumes"]), f"monitoring: {suffix} has the extra volume")
        check(any(m["name"] == "jwks" for m in spec["containers"][0]["volumeMounts"]), f"monitoring: {suffix} mounts it")
    test = [d for d in docs if d["kind"] == "Pod" and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    check(len(test) == 1 and test[0]["spec"]["containers"][0]["command"][:2] == ["orders-api", "probe"],
          "a helm test pod probes /readyz with the image's own probe")


dockerfile()
compose()
chart({}, "default values", production=False)
monitoring()
with open(os.path.join(CHART, "examples", "production.yaml")) as f:
    chart(yaml.safe_load(f), "examples/production.yaml", production=True)

if failures:
    print("\n".join(f"FAIL {m}" for m in failures), file=sys.stderr)
    sys.exit(1)
print("packaging: Dockerfile, docker-compose.yml and helm/orders are valid")
