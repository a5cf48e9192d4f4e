# syntax=docker/dockerfile:1
# The ltransfer container image. Two targets, both running as a non-root user (uid 65532) with
# ltransfer as the entry point, in /work:
#
#   docker build -t ltransfer .                             # static pure-Go binary on distroless (default)
#   docker build --target openblas -t ltransfer:openblas .  # the OpenBLAS build on Debian slim
#   docker run --rm -v "$PWD:/work" ltransfer batch manifest.yaml
#
# The binaries are built by .ci/build-binary, which CI runs too.

ARG GO_VERSION=1.26
ARG DEBIAN=bookworm

FROM golang:${GO_VERSION}-${DEBIAN} AS source
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .

FROM source AS build-static
RUN .ci/build-binary static /out/ltransfer

FROM source AS build-openblas
RUN apt-get update && apt-get install -y --no-install-recommends libopenblas-dev \
    && rm -rf /var/lib/apt/lists/*
RUN .ci/build-binary openblas /out/ltransfer

FROM debian:${DEBIAN}-slim AS openblas
RUN apt-get update && apt-get install -y --no-install-recommends libopenblas0 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build-openblas /out/ltransfer /usr/local/bin/ltransfer
USER 65532:65532
WORKDIR /work
ENTRYPOINT ["ltransfer"]

# The default target, last: the static binary alone.
FROM gcr.io/distroless/static-debian12:nonroot AS static
COPY --from=build-static /out/ltransfer /usr/local/bin/ltransfer
USER 65532:65532
WORKDIR /work
ENTRYPOINT ["ltransfer"]
