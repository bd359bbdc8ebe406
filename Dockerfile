# policy-webhook's container image: a static binary on distroless, nothing else.
#
#   make docker-build IMG=registry.example.com/policy-webhook:v0.1.0
#
# Base images are pinned by digest (of their multi-architecture index), so a
# rebuild of the same commit starts from the same bytes; the tag beside each
# digest says what it was when pinned. To move to a newer base:
#   crane digest golang:1.26            (or: docker buildx imagetools inspect)
#   crane digest gcr.io/distroless/static-debian12:nonroot

# The build runs on the builder's own platform and cross-compiles (pure Go,
# CGO off), so a multi-platform build (docker buildx --platform) needs no
# emulation. golang:1.26 = 1.26.8 at this digest; the official image sets
# GOTOOLCHAIN=local, so it must be at least the go directive of go.mod.
FROM --platform=$BUILDPLATFORM golang:1.26.8@sha256:3c3e25a4da13fd0478eed2df1eb35a0e667094a7124d3993a6a1d30f71c17e79 AS build
WORKDIR /src
# Modules first, in their own layer: a source change does not download them
# again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
# Static (CGO_ENABLED=0), reproducible (-trimpath, no VCS stamp: .git is not
# in the build context), stripped (-s -w), with its version stamped.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/policy-webhook ./cmd/policy-webhook

# distroless static, nonroot: CA certificates, tzdata and /etc/passwd with the
# nonroot user; no shell, no package manager, no libc.
# gcr.io/distroless/static-debian12:nonroot at this digest.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
ARG VERSION=dev
LABEL org.opencontainers.image.title="policy-webhook" \
      org.opencontainers.image.description="Validating admission webhook for Pods and MyApples, policy from ConfigMaps and AdmissionPolicies" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/policy-webhook /policy-webhook
# The distroless nonroot user, numerically, so that runAsNonRoot can check it
# without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/policy-webhook"]
CMD ["serve"]
