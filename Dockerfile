# syntax=docker/dockerfile:1
#
# custinfo: one static binary on a small image that runs as a non-root user.
#   docker build -t custinfo .
#   docker run --rm -e DATABASE_URL=postgres://... -p 8080:8080 custinfo serve

FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
# The migrations in db/migrations are embedded into the binary by go:embed.
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w" -o /out/custinfo ./cmd/custinfo

# Alpine rather than a distroless image: its busybox wget lets docker-compose.yml
# probe /readyz, and its CA bundle serves sslmode=verify-full connections.
FROM alpine:3.22
RUN addgroup -S -g 10001 custinfo \
 && adduser -S -D -H -u 10001 -G custinfo -s /sbin/nologin custinfo
COPY --from=build /out/custinfo /usr/local/bin/custinfo
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["custinfo"]
CMD ["serve"]
