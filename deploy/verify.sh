#!/usr/bin/env bash
# Checks every deploy/ artifact with the real tools (run by .ci/run, which installs them):
#   systemd units      systemd-analyze verify (any warning fails)
#   alert rules        promtool check rules, promtool test rules (alerts_test.yml)
#   metrics            promtool check metrics on a live scrape of the binary; every metric the
#                      alerts and the dashboard use is exported
#   Grafana dashboard  JSON, and every query is valid PromQL (promtool, as recording rules)
#   Kubernetes         kubernetes-validate --strict; the ConfigMap's zones pass `geosteer check`
#   container image    the Dockerfile's shape (no container engine runs here to build it)
#   anycast            bird -p (BIRD parses the config), then anycast/test.sh end to end, and
#                      anycast/netns-test.sh: failover between real hosts, queries lost
# PROMTOOL may name the promtool binary (default: promtool on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
binary="$PWD/target/debug/geosteer"
[ -x "$binary" ] || cargo build -q
promtool=${PROMTOOL:-promtool}
work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ok() { printf 'deploy/%s: OK\n' "$1"; }

# --- systemd units: point them at the freshly built binary and the repository's scripts.
sed "s|/usr/local/bin/geosteer|$binary|" deploy/geosteer.service > "$work/geosteer.service"
sed "s|/usr/local/bin/geosteer-anycast|$PWD/deploy/anycast/geosteer-anycast|" \
  deploy/anycast/geosteer-anycast.service > "$work/geosteer-anycast.service"
for unit in geosteer.service geosteer-anycast.service; do
  # systemd-analyze exits 0 on unknown keys (it only warns): any output is a failure here.
  out=$(cd "$work" && systemd-analyze verify "$work/$unit" 2>&1 | grep -v -e "bird.service" || true)
  if [ -n "$out" ]; then
    echo "$unit:"; echo "$out"; exit 1
  fi
  ok "$unit"
done

# --- Prometheus rules and their unit tests.
"$promtool" check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && "$promtool" test rules alerts_test.yml)
ok prometheus/alerts.yml

# --- A live scrape: the failover demo's checks fail (nothing listens), so health series exist.
"$binary" serve --listen 127.0.0.1:0 --admin 127.0.0.1:0 --zones zones/failover-demo \
  --geo geo/dbip-country.mmdb >"$work/serve.out" 2>"$work/serve.err" &
server=$!
admin=
for _ in $(seq 100); do
  admin=$(sed -n 's|^geosteer admin on http://||p' "$work/serve.out")
  [ -n "$admin" ] && grep -q "^geosteer listening" "$work/serve.out" && break
  sleep 0.1
done
[ -n "$admin" ] || { cat "$work/serve.err"; echo "geosteer did not start"; exit 1; }
dns=$(sed -n 's|^geosteer listening on \([^ ]*\).*|\1|p' "$work/serve.out")
# Some traffic, so the query series exist.
dig -p "${dns##*:}" @"${dns%:*}" +tries=1 +time=2 ingest.demo.example A >/dev/null
# Every geosteer_* metric the alerts and the dashboard use must be exported; poll (bounded)
# while the first health checks run, then check what the last scrape lacks. The fleet's
# gauge exists only with --fleet (a standalone instance must not alert on it); the fleet
# tests read it from instances in a fleet.
fleet_only='geosteer_fleet_connected'
used=$(grep -oh 'geosteer_[a-z_]*' deploy/prometheus/alerts.yml deploy/grafana/geosteer.json \
  | grep -vx "$fleet_only" | sort -u)
for _ in $(seq 50); do
  curl -fsS "http://$admin/metrics" > "$work/metrics.txt"
  exported=$(sed -n 's/^\(geosteer_[a-z_]*\).*/\1/p' "$work/metrics.txt" | sed 's/_\(count\|sum\)$//' | sort -u)
  missing=$(comm -13 <(echo "$exported") <(echo "$used"))
  [ -z "$missing" ] && break
  sleep 0.1
done
"$promtool" check metrics < "$work/metrics.txt"
ok "metrics (live scrape)"

if [ -n "$missing" ]; then
  echo "used by alerts or dashboard but not exported:"; echo "$missing"; exit 1
fi
ok "metric names"

# --- Grafana: valid JSON whose queries are valid PromQL.
python3 - deploy/grafana/geosteer.json "$work/dashboard_rules.yml" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
assert exprs, "the dashboard has no queries"
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        e = e.replace("$__rate_interval", "5m").replace("$instance", ".*")
        out.write(f"      - record: dashboard:query{i}\n        expr: {json.dumps(e)}\n")
print(f"{len(exprs)} dashboard queries")
PY
"$promtool" check rules "$work/dashboard_rules.yml" >/dev/null
ok grafana/geosteer.json

# --- Kubernetes manifests, and the zones the ConfigMap carries.
kubernetes-validate --strict --quiet deploy/kubernetes/namespace.yaml deploy/kubernetes/configmap.yaml \
  deploy/kubernetes/deployment.yaml deploy/kubernetes/service.yaml deploy/kubernetes/poddisruptionbudget.yaml
mkdir -p "$work/cm-zones"
python3 - deploy/kubernetes/configmap.yaml "$work/cm-zones" <<'PY'
import os, sys, yaml
data = yaml.safe_load(open(sys.argv[1]))["data"]
for name, text in data.items():
    open(os.path.join(sys.argv[2], name), "w").write(text)
PY
"$binary" check "$work/cm-zones" --geo geo/dbip-country.mmdb
python3 - <<'PY'
import yaml
k = yaml.safe_load(open("deploy/kubernetes/kustomization.yaml"))
import os
for r in k["resources"]:
    assert os.path.exists(os.path.join("deploy/kubernetes", r)), f"kustomization lists missing {r}"
PY
ok kubernetes

# --- Container image: multi-stage, non-root, and every COPY source exists.
python3 - deploy/container/Dockerfile <<'PY'
import os, re, sys
lines, current = [], ""
for raw in open(sys.argv[1]):
    line = raw.rstrip("\n")
    if line.lstrip().startswith("#"):
        continue
    current += line.rstrip("\\") + " "
    if not line.endswith("\\"):
        if current.strip():
            lines.append(current.strip())
        current = ""
froms = [l for l in lines if l.upper().startswith("FROM ")]
assert len(froms) >= 2, "expected a multi-stage build"
final = lines[lines.index(froms[-1]):]
users = [l.split()[1] for l in final if l.upper().startswith("USER ")]
assert users and not users[-1].split(":")[0] in ("0", "root"), "the final stage must run as non-root"
stages = {l.split()[-1] for l in froms if " AS " in l.upper()}
for l in lines:
    if l.upper().startswith("COPY ") and "--from=" not in l:
        for src in l.split()[1:-1]:
            assert os.path.exists(src), f"COPY source {src} does not exist"
    assert not l.upper().startswith("ADD "), "use COPY, not ADD"
print(f"Dockerfile: {len(froms)} stages, runs as {users[-1]}")
PY
ok container/Dockerfile

# --- BIRD: parses the config, then the announce/withdraw loop against a real geosteer.
bird -p -c deploy/anycast/bird.conf
GEOSTEER="$binary" bash deploy/anycast/test.sh
# Failover between real hosts (network namespaces: a router, two hosts, a client), with the
# queries lost printed. Namespaces need root.
if [ "$(id -u)" -eq 0 ]; then
  GEOSTEER="$binary" bash deploy/anycast/netns-test.sh
else
  echo "deploy/anycast/netns-test.sh skipped: network namespaces need root"
fi
ok anycast
