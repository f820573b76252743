# Multi-stage build: a static, CGO-free binary on a distroless base that runs
# as a non-root user. Build: docker build -t moonborn-edge . (or podman build:
# the base images are fully qualified, so no short-name alias is needed).
FROM docker.io/library/golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/gateway ./cmd/gateway \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/mockllm ./cmd/mockllm \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /out/mockllm /usr/local/bin/
# The default config is built into the binary; mount a file and pass
# -config to use another. The usage ledger (ledger.path, relative) lands
# under the working directory; mount a volume there to keep it.
COPY --from=build --chown=65532:65532 /out/data /var/lib/moonborn/data
WORKDIR /var/lib/moonborn
USER 65532:65532
# 8080: public API; 9090: admin (/healthz, /readyz, /metrics). Inside a
# container the listeners must bind all interfaces; publish 9090 only to
# trusted networks.
EXPOSE 8080 9090
# distroless has no shell or curl: the binary asks its own /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/gateway", "-healthcheck", "-admin-listen", "0.0.0.0:9090"]
ENTRYPOINT ["/usr/local/bin/gateway", "-listen", "0.0.0.0:8080", "-admin-listen", "0.0.0.0:9090"]
