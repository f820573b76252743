# Multi-stage build: a static, CGO-free binary on a distroless base that runs
# as a non-root user. Build: docker build -t moonborn-edge .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/gateway ./cmd/gateway \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/mockllm ./cmd/mockllm \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /out/mockllm /usr/local/bin/
COPY --from=build /src/config.yaml /etc/moonborn/config.yaml
# The usage ledger (ledger.path, relative) lands here; mount a volume to keep it.
COPY --from=build --chown=65532:65532 /out/data /var/lib/moonborn/data
WORKDIR /var/lib/moonborn
USER 65532:65532
# 8080: public API; 9090: admin (/healthz, /readyz). Inside a container the
# listeners must bind all interfaces; publish 9090 only to trusted networks.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/gateway", "-config", "/etc/moonborn/config.yaml", "-listen", "0.0.0.0:8080", "-admin-listen", "0.0.0.0:9090"]
