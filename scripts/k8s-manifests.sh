#!/usr/bin/env bash
# The Kubernetes manifests (infrastructure/kustomization.yaml) rendered by kustomize for a
# deployment, on stdout, without editing a file in the repository:
#
#   REGISTRY   where `make docker-push` put the images: REGISTRY/<producer>:IMAGE_TAG
#              (default: the kustomization's own names, finstream/<producer>)
#   IMAGE_TAG  the images' tag                        (default: the kustomization's, 0.1.0)
#   NAMESPACE  the namespace of every resource        (default: finstream)
#   KAFKA_IMAGE  the topics Job's Kafka image         (default: apache/kafka:4.1.1)
#
#   make k8s-manifests REGISTRY=registry.example.com/finstream IMAGE_TAG=0.1.0 | kubectl apply -f -
#
# kustomize: .local/bin/kustomize (scripts/deps.sh installs it), else `kubectl kustomize`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

producers=(market-producer news-producer social-producer sec-producer altdata-producer)
overlay=$(mktemp -d "${TMPDIR:-/tmp}/finstream-k8s.XXXXXX")
trap 'rm -rf "$overlay"' EXIT

{
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n'
  # kustomize takes a base by relative path only.
  printf 'resources:\n  - %s\n' "$(realpath --relative-to="$overlay" infrastructure)"
  [[ -z ${NAMESPACE:-} ]] || printf 'namespace: %s\n' "$NAMESPACE"
  printf 'images:\n'
  for p in "${producers[@]}"; do
    printf '  - name: finstream/%s\n' "$p"
    [[ -z ${REGISTRY:-} ]] || printf '    newName: %s/%s\n' "${REGISTRY%/}" "$p"
    [[ -z ${IMAGE_TAG:-} ]] || printf '    newTag: "%s"\n' "$IMAGE_TAG"
  done
  if [[ -n ${KAFKA_IMAGE:-} ]]; then
    printf '  - name: apache/kafka\n    newName: %s\n    newTag: "%s"\n' "${KAFKA_IMAGE%:*}" "${KAFKA_IMAGE##*:}"
  fi
} >"$overlay/kustomization.yaml"

if [[ -x .local/bin/kustomize ]]; then
  .local/bin/kustomize build "$overlay"
elif command -v kustomize >/dev/null; then
  kustomize build "$overlay"
elif command -v kubectl >/dev/null; then
  kubectl kustomize "$overlay"
else
  echo "k8s-manifests.sh: no kustomize: run scripts/deps.sh (installs .local/bin/kustomize)" >&2
  exit 1
fi
