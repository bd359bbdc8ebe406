#!/usr/bin/env bash
# Builds the local control plane that envtest starts (KUBEBUILDER_ASSETS):
# kube-apiserver, kube-controller-manager and kubectl from k8s.io/kubernetes
# (module hack/tools/kube) and etcd from go.etcd.io/etcd/server/v3 (module
# hack/tools/etcd), from the Go module proxy alone: no release tarballs, no
# Docker, no network besides Go's.
#
#   hack/build-tools.sh DIR
#
# DIR is the versioned cache directory the Makefile names
# (…/policy-webhook/tools/kube-vX.Y.Z_etcd-vA.B.C). The binaries are built into a
# temporary directory beside DIR, which is renamed to DIR only when all of them
# built and ran; DIR/.complete is the make target and records what was built, so
# an interrupted build never leaves a cache that looks usable and a second run
# with the same inputs does nothing.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
target=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kube_mod=$root/hack/tools/kube
etcd_mod=$root/hack/tools/etcd
GO=${GO:-go}

log() { printf '%s build-tools: %s\n' "$(date +%H:%M:%S)" "$*"; }

# Builds run from the tool modules, never from a workspace the caller may have,
# and only with the versions and sums committed in their go.mod and go.sum.
export GOWORK=off CGO_ENABLED=0

mod_version() { (cd "$1" && "$GO" list -mod=readonly -m -f '{{.Version}}' "$2"); }
mod_time() { (cd "$1" && "$GO" list -mod=readonly -m -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' "$2"); }

kube_version=$(mod_version "$kube_mod" k8s.io/kubernetes)
etcd_version=$(mod_version "$etcd_mod" go.etcd.io/etcd/server/v3)

# The cache directory is keyed by version in the Makefile; a Makefile bump
# without the matching go.mod bump (or the reverse) would label one build with
# another's versions, so refuse instead.
base=$(basename "$target")
if [[ $base == kube-*_etcd-* && $base != "kube-${kube_version}_etcd-${etcd_version}" ]]; then
	echo "build-tools: $target is named for other versions than hack/tools pins" \
		"(kube $kube_version, etcd $etcd_version); update the Makefile or hack/tools/*/go.mod" >&2
	exit 1
fi

# What was built is identified by the inputs' content, not their mtimes: a git
# checkout touches files without changing them and must not cost a rebuild.
stamp=$(cat "$kube_mod/go.mod" "$kube_mod/go.sum" "$etcd_mod/go.mod" "$etcd_mod/go.sum" \
	"${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)
stamp="$stamp $("$GO" env GOVERSION)"

mkdir -p "$(dirname "$target")"
# Several checkouts (or helpers) may run `make tools` at once; one builds, the
# others wait and then find the cache complete.
exec 9>"$target.lock"
if command -v flock >/dev/null; then
	flock 9
fi

if [[ -f $target/.complete && "$(cat "$target/.complete")" == "$stamp" ]]; then
	touch "$target/.complete"
	log "$target is up to date (kube-apiserver, kube-controller-manager, kubectl $kube_version; etcd $etcd_version)"
	exit 0
fi

# Holding the lock, any temporary directory beside DIR is a build that was
# killed before it could clean up.
rm -rf "$target".tmp.*
tmp=$(mktemp -d "$target.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM # run the EXIT trap on interruption too

# The version variables the Kubernetes release build sets
# (hack/lib/version.sh), so `kubectl version` and the apiserver's /version
# report the release instead of v0.0.0-master. The module has no commit to
# report; the build date is the tag's date from the module proxy, which keeps
# the build reproducible.
minor=${kube_version#v*.}
minor=${minor%%.*}
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
	kube_ldflags+=" -X $pkg.buildDate=$(mod_time "$kube_mod" k8s.io/kubernetes)"
done

# The same build settings as the upstream release builds: static (CGO off),
# trimmed paths, no symbol tables; selinux,notest,grpcnotrace are the tags
# Kubernetes' hack/lib/golang.sh builds its binaries with. The three
# Kubernetes binaries are one invocation with one set of flags, so the
# packages they share are compiled once (and kept in the build cache).
build=(nice -n "${NICE:-10}" "$GO" build -mod=readonly -trimpath)

start=$SECONDS
log "building kube-apiserver, kube-controller-manager, kubectl $kube_version into $tmp (takes minutes on a cold cache)"
(cd "$kube_mod" && "${build[@]}" -tags selinux,notest,grpcnotrace -ldflags "$kube_ldflags" \
	-o "$tmp/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kubectl)
log "kube-apiserver, kube-controller-manager, kubectl built in $((SECONDS - start))s"

step=$SECONDS
log "building etcd $etcd_version"
(cd "$etcd_mod" && "${build[@]}" -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
log "etcd built in $((SECONDS - step))s"

# A binary that does not run is not a cache; check before publishing it.
"$tmp/kube-apiserver" --version
"$tmp/kube-controller-manager" --version
"$tmp/kubectl" version --client
"$tmp/etcd" --version

printf '%s\n' "$stamp" >"$tmp/.complete"
chmod 0755 "$tmp"
rm -rf "$target"
mv -T "$tmp" "$target"
trap - EXIT
log "$target complete in $((SECONDS - start))s"
