#!/usr/bin/env bash
# The README's first command (make demo): build examples/hello into a
# reproducible cluster artifact, push it to a registry served by k2 itself,
# drop the local copy, pull it back, inspect it, deploy it with the local
# provider (1 control plane on SQLite + 2 agents running real pods as root,
# simulated ones otherwise), look at it with kubectl, and destroy it.
# Everything stays on this machine and in a temporary K2_HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
K2=${K2:-./bin/k2}
[ -x "$K2" ] || { echo "demo: $K2 not found; run make build" >&2; exit 1; }

work=$(mktemp -d -t k2-demo.XXXXXX)
export K2_HOME=$work/home NO_COLOR=1
reg_pid=
cleanup() {
	for env in default web; do
		if [ -s "$K2_HOME/clusters/$env/cluster.json" ]; then "$K2" destroy "$env" --yes >/dev/null 2>&1 || true; fi
	done
	if [ -n "$reg_pid" ]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

step() { printf '\n==> %s\n' "$*"; }

step "k2 registry serve --addr 127.0.0.1:0   (an in-process OCI registry, in the background)"
"$K2" registry serve --addr 127.0.0.1:0 >"$work/registry.addr" 2>"$work/registry.log" &
reg_pid=$!
for _ in $(seq 50); do [ -s "$work/registry.addr" ] && break; sleep 0.1; done
addr=$(head -n1 "$work/registry.addr")
[ -n "$addr" ] || { echo "demo: the registry did not start:" >&2; cat "$work/registry.log" >&2; exit 1; }
echo "registry at $addr"
ref=$addr/demo/hello:v1
web=$addr/demo/web:v1

step "go run ./scripts/webimage $web   (the App's image: a small HTTP server, built here, no internet)"
go run ./scripts/webimage "$web"

step "k2 build -t $ref examples/hello"
"$K2" build -q -t "$ref" examples/hello

step "k2 push $ref"
pinned=$("$K2" push -q "$ref")
echo "$pinned"

step "k2 images rm $ref   (drop the local copy)"
"$K2" images rm "$ref"
"$K2" images

step "k2 pull $pinned"
"$K2" pull -q "$pinned"

step "k2 inspect $pinned"
"$K2" inspect "$pinned"

built=${pinned##*@}
got=$("$K2" inspect -o json "$pinned" | sed -n 's/^  "digest": "\(.*\)",$/\1/p')
if [ "$got" != "$built" ]; then
	echo "demo: pulled digest $got differs from pushed $built" >&2
	exit 1
fi
step "ok: pushed and pulled the same artifact ($built)"

# examples/hello's workloads name public images this machine may not reach:
# its environment runs simulated pods on the host network.
printf 'network: host\n' >"$work/sim.yaml"
"$K2" env create default --provider local --provider-config "$work/sim.yaml" >/dev/null

step "k2 deploy $pinned --provider local   (simulated pods: the images are public ones)"
start=$(date +%s%N)
"$K2" deploy "$pinned" --provider local
echo "deployed in $(( ($(date +%s%N) - start) / 1000000 )) ms"

step "k2 status"
"$K2" status

if command -v kubectl >/dev/null; then
	step "kubectl get nodes,apps,deploy,svc,cm   (the real kubectl against the deployed cluster)"
	kubectl --kubeconfig "$("$K2" kubeconfig default --path)" get nodes,apps.k2.dev,deploy,svc,cm 2>/dev/null
fi

step "k2 destroy default --yes"
"$K2" destroy default --yes

step "k2 build -t $addr/demo/web:v1 examples/web; k2 deploy … --env web --set image=$web"
echo "(real pods: kubelet + containerd in each worker's own network namespace, where"
echo " this machine can run them — root, runc, CNI plugins; simulated otherwise)"
"$K2" build -q -t "$addr/demo/web-cluster:v1" examples/web
start=$(date +%s%N)
"$K2" deploy "$addr/demo/web-cluster:v1" --provider local --env web --set "image=$web"
echo "deployed in $(( ($(date +%s%N) - start) / 1000000 )) ms"
if command -v kubectl >/dev/null; then
	kc=$("$K2" kubeconfig web --path)
	kubectl --kubeconfig "$kc" get nodes -L k2.dev/runtime
	kubectl --kubeconfig "$kc" get pods -o wide
	pod=$(kubectl --kubeconfig "$kc" get pods -o name | head -n1)
	if [ "$(kubectl --kubeconfig "$kc" get nodes -l k2.dev/runtime=kubelet -o name | wc -l)" -gt 0 ]; then
		step "kubectl exec $pod -- /httpserver get http://web.default.svc.cluster.local:8080/   (Service DNS)"
		kubectl --kubeconfig "$kc" exec "${pod#pod/}" -- /httpserver get http://web.default.svc.cluster.local:8080/
		step "kubectl logs $pod"
		kubectl --kubeconfig "$kc" logs "${pod#pod/}"
	fi
fi
step "k2 destroy web --yes"
"$K2" destroy web --yes
step "ok: built, shared, deployed and destroyed a whole cluster"
