#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) from a seed corpus built from the
# repository's testdata/ (fixtures and signature vectors). Needs cargo-fuzz (`cargo install --locked cargo-fuzz`);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain build with the sanitizer flags cargo-fuzz uses.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#        FUZZ_RUNS=10000000 scripts/fuzz.sh 0   (a number of executions per target instead of a time)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(verify_parts webhook_parse api_models)
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

# Seeds: committed ones (fuzz/seeds), plus the fixtures and vectors.
python3 - testdata <<'PY'
import base64, json, os, sys
data = sys.argv[1]
def put(target, name, data):
    d = os.path.join("fuzz", "corpus", target); os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(data)
for v in json.load(open(os.path.join(data, "vectors", "signatures.json")))["vectors"]:
    body = base64.b64decode(v["body_base64"]) if "body_base64" in v else v["body"].encode()
    put("verify_parts", v["name"], v["generated_at"].encode() + b"\xff" + v["signature"].encode() + b"\xff" + body)
    put("webhook_parse", v["name"], body)
for f in sorted(os.listdir(os.path.join(data, "fixtures", "webhooks"))):
    put("webhook_parse", f, open(os.path.join(data, "fixtures", "webhooks", f), "rb").read())
models = {"session-status.json": 0, "session-transcript.json": 1, "session-content.json": 2,
          "session-structured-data.json": 3, "form-filling-structured-data.json": 5,
          "error.json": 6, "login-response.json": 7}
for f, i in models.items():
    put("api_models", f, bytes([i]) + open(os.path.join(data, "fixtures", "api", f), "rb").read())
PY
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    [ -d "fuzz/seeds/$t" ] && cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
    if [ -n "${FUZZ_RUNS:-}" ]; then
        limit=(-runs="$FUZZ_RUNS"); echo "==> fuzzing $t for $FUZZ_RUNS executions"
    else
        limit=(-max_total_time="$seconds"); echo "==> fuzzing $t for ${seconds}s"
    fi
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "fuzz/corpus/$t" -- "${limit[@]}" -print_final_stats=1 2>&1 \
        | tee "/tmp/suki-fuzz-$t.log" | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|Done)" || true
done
