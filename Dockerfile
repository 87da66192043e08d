# marmot's container image, for people who build with Docker:
#
#   docker build -t marmot:dev .
#
# Bazel builds an equivalent image without a Docker engine (bazel build //tools/k8s:image, see
# README.md, "Deploy on Kubernetes"). Both run as user 10001 with the data folder
# /var/lib/marmot, as tools/k8s/statefulset.yaml expects.

FROM debian:12 AS build
WORKDIR /src
COPY . .
# tools/dev installs the Debian packages the build needs (Debian's Bazel 4.2.3 among them).
# .bazelrc makes the build optimized (-c opt).
RUN tools/dev setup && bazel build //:marmot && cp bazel-bin/marmot /marmot
# The Debian packages that ship the shared libraries marmot loads, for the runtime stage.
RUN ldd /marmot | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' \
    | while read -r lib; do dpkg -S "*/$(basename "$(dirname "$lib")")/$(basename "$lib")"; done \
    | cut -d: -f1 | sort -u >/runtime-packages

FROM debian:12-slim
COPY --from=build /runtime-packages /tmp/runtime-packages
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       $(cat /tmp/runtime-packages) \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages \
    && groupadd -g 10001 marmot \
    && useradd -u 10001 -g 10001 -d /var/lib/marmot -M -s /usr/sbin/nologin marmot \
    && install -d -o 10001 -g 10001 /var/lib/marmot
COPY --from=build /marmot /usr/local/bin/marmot
USER 10001:10001
WORKDIR /var/lib/marmot
VOLUME /var/lib/marmot
EXPOSE 8610 6010
ENTRYPOINT ["/usr/local/bin/marmot"]
