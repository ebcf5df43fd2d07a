#!/usr/bin/env bash
# The public API of each published library crate (cargo-public-api, on the machine's nightly
# toolchain: rustdoc's JSON output is unstable), compared with its snapshot in api/<crate>.txt.
# A difference is printed as a unified diff and fails the run, so that every change to the
# public surface is seen in review; after a deliberate change, write the snapshots again:
#
#   scripts/public_api.sh --bless
#
# Needs `cargo public-api` on the PATH (`.ci/run` installs it) and a nightly toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

crates=(
    suki-ambient-core suki-ambient-axum suki-ambient-actix suki-ambient-warp
    suki-ambient-client suki-ambient-redis suki-ambient-inbox suki-ambient-console
    suki-ambient-fhir suki-ambient-sandbox suki-ambient
)
bless=false
[ "${1:-}" = --bless ] && bless=true
mkdir -p api
changed=()
for crate in "${crates[@]}"; do
    log=$(mktemp)
    if ! current=$(cargo public-api -p "$crate" --all-features -sss --color never 2>"$log"); then
        cat "$log" >&2
        echo "error: cargo public-api failed for $crate (above)" >&2
        exit 1
    fi
    rm -f "$log"
    if $bless; then
        printf '%s\n' "$current" > "api/$crate.txt"
        echo "api/$crate.txt: $(wc -l < "api/$crate.txt") items"
    elif ! diff -u --label "api/$crate.txt (snapshot)" --label "$crate (this tree)" \
        "api/$crate.txt" <(printf '%s\n' "$current"); then
        changed+=("$crate")
    fi
done
if [ ${#changed[@]} -gt 0 ]; then
    echo "the public API changed: ${changed[*]} (above). If that is intended, run scripts/public_api.sh --bless and commit api/." >&2
    exit 1
fi
$bless || echo "public API: as in api/ (${#crates[@]} crates)"
