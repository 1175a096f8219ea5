# authd: a static binary on distroless, as a non-root user.
#   docker build -t authd .
#   docker compose up --build

# --- build ---------------------------------------------------------------
FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first: a code change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=docker
# CGO_ENABLED=0: a static binary (SQLite is modernc's pure Go), so the final
# image needs no libc.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/authd ./cmd/authd \
	&& mkdir -p /out/data

# --- run -----------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authd /authd
# The data directory (SQLite and development secrets when no PostgreSQL is
# configured), writable by the user below.
COPY --from=build --chown=65532:65532 /out/data /data
# Metrics on their own port, reachable by a scraper in the same network;
# the image does not publish it (no EXPOSE): a deployment decides who may
# reach it.
ENV AUTHD_DATA_DIR=/data \
	HOST=0.0.0.0 \
	PORT=8013 \
	METRICS_ADDR=0.0.0.0:9464
# Explicit even on a :nonroot base, so that it is visible: never root.
USER 65532:65532
EXPOSE 8013
# The image has no shell or curl: the binary asks its own readiness.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/authd", "healthcheck"]
ENTRYPOINT ["/authd"]
CMD ["serve"]
