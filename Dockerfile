# syntax=docker/dockerfile:1
#
# anvil-router as a container: a static binary on a distroless base, run as
# a non-root user, tailnet state on a volume, no port published (the router
# is reached over the tailnet only: http://anvil/v1).
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t anvil-router .
#
# cmd/anvil-router/deploy_test.go builds the binary with the same command as
# the build stage below and checks the invariants of this file.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
ENV GOTOOLCHAIN=local
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/anvil-router ./cmd/anvil-router
# The state dir, owned by the runtime user; a new named volume mounted on
# /var/lib/anvil starts as a copy of it, owner included.
RUN mkdir -p /out/state/tailscale && chmod 0700 /out/state/tailscale

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/anvil-router /usr/local/bin/anvil-router
COPY --from=build --chown=65532:65532 /out/state/ /var/lib/anvil/
# 65532 is distroless's "nonroot" user.
USER 65532:65532
ENV TS_STATE_DIR=/var/lib/anvil/tailscale \
    ANVIL_CONFIG=/etc/anvil/router.toml \
    ANVIL_LOG_FORMAT=json
VOLUME ["/var/lib/anvil"]
# Needs [server].local_listen (e.g. "127.0.0.1:8080") in the config.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/anvil-router", "healthcheck", "--config", "/etc/anvil/router.toml"]
ENTRYPOINT ["/usr/local/bin/anvil-router"]
CMD ["serve", "--config", "/etc/anvil/router.toml"]
