#!/usr/bin/env bash
# Makes the two base images the Dockerfile names, docker.io/library/debian:bookworm and
# debian:bookworm-slim, locally (there is no image registry here): debootstrap --variant=minbase
# bookworm from the Debian mirror in this machine's apt sources, packed as two tarballs (the
# slim one without docs, man pages and locales, like Docker's official slim image) and imported
# with podman into the container storage that CONTAINERS_STORAGE_CONF names.
#
# Caching: the tarballs are kept under $MBX_CI_CACHE (default /var/cache/multibox-ci/base), keyed
# by a hash of this recipe, the mirrors and the date (a new base at most once a day, so security
# updates still arrive); the import is skipped when both tags already carry this key as a label.
# Runs as root (debootstrap needs it). Used by scripts/container-test.sh.
set -euo pipefail

cache_root=${MBX_CI_CACHE:-/var/cache/multibox-ci}
base_dir=$cache_root/base
recipe_version=3   # bump when anything below changes what goes into the tarballs

log() { printf 'container-base: %s\n' "$*" >&2; }

# Prints "MAIN_URI SECURITY_URI" for bookworm from the apt sources (deb822 .sources files and
# one-line .list files); SECURITY_URI is "-" when the machine has none.
apt_mirrors() {
    local files=() f
    [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    awk '
        function pick(types, uris, suites,   n, i, s, u) {
            if (types !~ /(^|[ \t])deb([ \t]|$)/) return
            split(uris, u, /[ \t]+/)
            n = split(suites, s, /[ \t]+/)
            for (i = 1; i <= n; i++) {
                if (s[i] == "bookworm" && main == "") main = u[1]
                if (s[i] == "bookworm-security" && sec == "") sec = u[1]
            }
        }
        FNR == 1 { if (t != "") pick(t, ur, su); t = ""; ur = ""; su = "" }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[ \t]*$/) { if (t != "") pick(t, ur, su); t = ""; ur = ""; su = ""; next }
            if ($0 ~ /^[ \t]*#/) next
            line = $0; key = line; sub(/:.*/, "", key); val = line; sub(/^[^:]*:[ \t]*/, "", val)
            if (key == "Types") t = val
            else if (key == "URIs") ur = val
            else if (key == "Suites") su = val
            next
        }
        /^[ \t]*deb[ \t]/ {
            line = $0; sub(/\[[^]]*\]/, "", line)
            n = split(line, w, /[ \t]+/)
            i = (w[1] == "") ? 2 : 1
            pick(w[i], w[i + 1], w[i + 2])
        }
        END {
            if (t != "") pick(t, ur, su)
            if (main == "") exit 1
            print main, (sec == "" ? "-" : sec)
        }' "${files[@]}"
}

read -r mirror security < <(apt_mirrors) || { log "no bookworm source in /etc/apt"; exit 1; }
key=$(printf '%s\n' "$recipe_version" "$mirror" "$security" "$(date -u +%F)" | sha256sum | cut -c1-16)
full_tar=$base_dir/bookworm-$key.tar
slim_tar=$base_dir/bookworm-slim-$key.tar

mkdir -p "$base_dir"
exec 9>"$base_dir/.lock"
flock 9

if [ ! -f "$full_tar" ] || [ ! -f "$slim_tar" ]; then
    log "debootstrap --variant=minbase bookworm from $mirror (key $key)"
    work=$(mktemp -d "$base_dir/.work.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    root=$work/root
    t0=$SECONDS
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    log "debootstrap took $((SECONDS - t0)) s"
    # The apt sources of Docker's official image (bookworm, -updates, -security), on this
    # machine's mirrors.
    rm -f "$root/etc/apt/sources.list"
    {
        printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$mirror"
        printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        if [ "$security" != - ]; then
            printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n' "$security"
            printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        fi
    } >"$root/etc/apt/sources.list.d/debian.sources"
    # Docker's official images drop downloaded packages after every install.
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
           "$root"/var/log/*.log
    tar --numeric-owner -C "$root" -cf "$work/full.tar" .
    # slim: what Docker's bookworm-slim leaves out, and the dpkg filter that keeps it out.
    find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
           "$root"/usr/share/groff/* "$root"/usr/share/lintian/* "$root"/usr/share/linda/*
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
    tar --numeric-owner -C "$root" -cf "$work/slim.tar" .
    # Only one day's tarballs are kept.
    rm -f "$base_dir"/bookworm-*.tar
    mv "$work/full.tar" "$full_tar"
    mv "$work/slim.tar" "$slim_tar"
    rm -rf "$work"
    trap - EXIT
else
    log "cached base tarballs $key"
fi

label=org.multibox.ci.base-key
import_if_needed() {   # TAR NAME
    local have
    have=$(buildah inspect --type image --format "{{index .Docker.Config.Labels \"$label\"}}" "$2" 2>/dev/null || true)
    if [ "$have" = "$key" ]; then
        log "$2 already imported ($key)"
        return
    fi
    log "podman import $2"
    podman import --quiet --change 'CMD ["bash"]' --change "LABEL $label=$key" "$1" "$2" >/dev/null
}
t0=$SECONDS
import_if_needed "$full_tar" docker.io/library/debian:bookworm
import_if_needed "$slim_tar" docker.io/library/debian:bookworm-slim
log "import step took $((SECONDS - t0)) s"
