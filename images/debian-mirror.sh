# The Debian mirror for offline builds, read from this machine's own apt sources (never a
# hard-coded host). Sourced by images/build-offline.sh (docker images) and
# .ci/cgroup-v2-vm.sh (the cgroup v2 test VM); the caller defines `say` and `die`.
#
#   debian_mirror SUITE   sets MIRROR (and KEYRING when the source names a readable one)
#
# EXECBOX_DEBIAN_MIRROR, when set, is used instead of the apt sources.

# deb822 files (/etc/apt/sources.list.d/*.sources): print "URI<TAB>SIGNED-BY" for
# each enabled `deb` stanza whose Suites include exactly SUITE, skipping
# security mirrors.
mirrors_from_deb822() {
    local suite=$1
    shift
    awk -v suite="$suite" '
        function flush(   n, s, i, ok, u) {
            if (f["uris"] != "" && f["enabled"] !~ /^[[:space:]]*no[[:space:]]*$/ \
                && (" " f["types"] " ") ~ /[[:space:]]deb[[:space:]]/) {
                n = split(f["suites"], s, /[[:space:]]+/); ok = 0
                for (i = 1; i <= n; i++) if (s[i] == suite) ok = 1
                if (ok) {
                    n = split(f["uris"], u, /[[:space:]]+/)
                    for (i = 1; i <= n; i++)
                        if (u[i] != "" && u[i] !~ /security/)
                            printf "%s\t%s\n", u[i], f["signed-by"]
                }
            }
            delete f; key = ""
        }
        /^#/ { next }
        /^[[:space:]]*$/ { flush(); next }
        /^[[:space:]]/ { if (key != "") f[key] = f[key] " " $0; next }
        {
            i = index($0, ":"); if (i == 0) next
            key = tolower(substr($0, 1, i - 1))
            f[key] = substr($0, i + 1)
            gsub(/^[[:space:]]+|[[:space:]]+$/, "", f[key])
        }
        END { flush() }
    ' "$@"
}

# one-line format (/etc/apt/sources.list, *.list): `deb [opts] URL bookworm comps`
mirrors_from_list() {
    local suite=$1
    shift
    awk -v suite="$suite" '
        $1 != "deb" { next }
        {
            i = 2; signed = ""
            if ($2 ~ /^\[/) {
                for (; i <= NF; i++) {
                    if ($i ~ /^\[?signed-by=/) { signed = $i; sub(/^\[?signed-by=/, "", signed); sub(/\]$/, "", signed) }
                    if ($i ~ /\]$/) { i++; break }
                }
            }
            if ($(i + 1) == suite && $i !~ /security/) printf "%s\t%s\n", $i, signed
        }
    ' "$@"
}

find_mirror() {
    local suite=$1
    local -a deb822=() lists=()
    local f
    for f in /etc/apt/sources.list.d/*.sources; do if [[ -f $f ]]; then deb822+=("$f"); fi; done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do if [[ -f $f ]]; then lists+=("$f"); fi; done
    {
        if ((${#deb822[@]})); then mirrors_from_deb822 "$suite" "${deb822[@]}"; fi
        if ((${#lists[@]})); then mirrors_from_list "$suite" "${lists[@]}"; fi
    } | awk -F'\t' '$1 ~ /^(https?|file):/' | head -n 1
}

debian_mirror() {
    local suite=$1 line signed
    MIRROR="" KEYRING=""
    if [[ -n ${EXECBOX_DEBIAN_MIRROR:-} ]]; then
        MIRROR=$EXECBOX_DEBIAN_MIRROR
        say "mirror $MIRROR (from EXECBOX_DEBIAN_MIRROR)"
    else
        line=$(find_mirror "$suite" || true)
        [[ -n $line ]] || die "no Debian $suite mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list
  (looked for a non-security 'deb' entry whose suite is '$suite').
  Set EXECBOX_DEBIAN_MIRROR to a Debian mirror URL, e.g. EXECBOX_DEBIAN_MIRROR=http://<your-mirror>/debian"
        MIRROR=${line%%$'\t'*}
        signed=${line#*$'\t'}
        if [[ -n $signed && -f $signed ]]; then KEYRING=$signed; fi
        say "mirror $MIRROR (from this machine's apt sources)${KEYRING:+, keyring $KEYRING}"
    fi
}
