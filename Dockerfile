# multiboxd container image (Debian 12).
# Stage "build" compiles the project on debian:bookworm and runs the test suites that need
# nothing outside this repository. Left out: the suite "golden" (the golden cases live in
# ../shared/golden, outside the build context, and golden_dir points nowhere), "api" (Node.js
# packages), "python" (numpy, torch), "deploy" (checks deploy/, not in the context) and
# "scaleout" (needs nginx).
# Stage "runtime" is debian:bookworm-slim with only the runtime libraries and the server, run
# as a numeric non-root user.
#
#   docker build -t multibox .        (or: buildah bud --format docker -t multibox .)
#   docker run --rm -p 8080:8080 multibox [--workers N] [--log-format json] ...
#
# Every flag has an environment twin MULTIBOX_<FLAG>. The HEALTHCHECK probes 127.0.0.1:8080: if
# you move the server to another port with --listen, override the health check too.

FROM debian:bookworm AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        meson ninja-build pkg-config gcc libc6-dev \
        libjansson-dev libmicrohttpd-dev libuv1-dev \
        libcmocka-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Extra `meson test` arguments, e.g. --build-arg MBX_TEST_ARGS="--suite core"; compile jobs
# (default: ninja's own choice).
ARG MBX_TEST_ARGS="--no-suite golden --no-suite api --no-suite python --no-suite deploy --no-suite scaleout"
ARG MBX_BUILD_JOBS=""
RUN meson setup /build --buildtype=release -Dgolden_dir=/nonexistent/golden \
 && meson compile -C /build ${MBX_BUILD_JOBS:+-j "$MBX_BUILD_JOBS"} \
 && meson test -C /build --print-errorlogs ${MBX_TEST_ARGS} \
 && install -D -m 0755 /build/src/service/multiboxd /out/multiboxd \
 && strip --strip-unneeded /out/multiboxd

FROM debian:bookworm-slim AS runtime
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends libjansson4 libmicrohttpd12 libuv1 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/multiboxd /usr/local/bin/multiboxd
# Fails the build if a shared library is missing at run time.
RUN ["/usr/local/bin/multiboxd", "--version"]
LABEL org.opencontainers.image.title="multiboxd" \
      org.opencontainers.image.description="SSD MultiBox loss and gradients as an HTTP service" \
      org.opencontainers.image.licenses="MIT"
# No passwd entry is needed: a numeric USER lets Kubernetes' runAsNonRoot verify it.
USER 10001:10001
EXPOSE 8080
# multiboxd runs as PID 1 (exec-form ENTRYPOINT, no shell, no init): it installs its own SIGTERM
# and SIGINT handlers, so the kernel's "no default action for PID 1" rule does not swallow them,
# and it starts no child processes, so there are no zombies to reap.
# On SIGTERM it turns /readyz to 503, answers every request already received, and exits 0.
STOPSIGNAL SIGTERM
# Readiness, not liveness: "healthy" then means "takes traffic" (compose's service_healthy, swarm
# routing). /readyz is 503 only before start-up ends (covered by --start-period) and once a
# drain has begun, when the container is stopping anyway. The probe is the server's own client.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/multiboxd", "--probe", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["/usr/local/bin/multiboxd"]
