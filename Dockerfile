# The apisync container image: one static binary on an empty base.
#
#   docker build -t ghcr.io/example/apisync:0.1.0 .
#
# (the name deploy/kubernetes/*.yaml run). The runtime stage holds nothing
# but the binary: no shell, no libc, no CA bundle, no package manager.
# - The binary is linked statically (glibc with +crt-static), so it needs
#   no shared library of the build machine.
# - CA roots are compiled in (rustls with webpki-root-certs), so HTTPS works
#   without /etc/ssl.
# - Names resolve as glibc does, from /etc/hosts then the DNS servers of
#   /etc/resolv.conf, both of which Kubernetes (and docker run) mount into
#   every container; glibc's files and dns lookups are part of the static
#   binary, so no NSS module is loaded. tests/container.rs runs this binary
#   in an empty chroot to prove all three (deploy/README.md, "The image").

# --- build -----------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# --target keeps +crt-static off build scripts and proc macros (they are
# host code loaded by the compiler and cannot be static).
RUN RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target x86_64-unknown-linux-gnu \
    && install -D -m 0755 target/x86_64-unknown-linux-gnu/release/apisync /out/usr/local/bin/apisync \
    && install -d -m 1777 /out/tmp

# --- runtime ---------------------------------------------------------------
FROM scratch
COPY --from=build /out/ /
ENV PATH=/usr/local/bin
# The user the Kubernetes manifests run as (runAsUser: 10001); numeric, as
# there is no /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/apisync
ENTRYPOINT ["apisync"]
CMD ["--help"]
