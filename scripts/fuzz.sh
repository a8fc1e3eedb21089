#!/usr/bin/env bash
# Runs Warden's fuzz targets (fuzz/, cargo-fuzz) for a while each, outside
# CI: installs cargo-fuzz if missing, picks a toolchain that can build with
# sanitizers, runs each target on its corpus, minimizes the corpus, and
# copies any crash into fuzz/regressions/<target>/ (which `cargo test`
# replays through `fuzz-targets`). Prints executions and time per target.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Toolchain: the nightly toolchain if rustup has one with the
# `wasm32-wasip2` target; otherwise the pinned toolchain with
# RUSTC_BOOTSTRAP=1, which accepts the same `-Z` flags. WARDEN_FUZZ_SANITIZER
# (default `address`) is passed to `cargo fuzz --sanitizer`; `none` builds on
# a toolchain without sanitizer support, with coverage feedback still on.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(policy_file ingest_json batch_refill plugin_output)
sanitizer=${WARDEN_FUZZ_SANITIZER:-address}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# The nightly toolchain is used only if it can also build the plugins the
# targets load (`wasm32-wasip2`): a nightly whose std for that target is not
# published cannot build the workspace at all.
toolchain=()
if rustup run nightly rustc --version >/dev/null 2>&1 &&
  rustup +nightly target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  toolchain=(+nightly)
  echo "== toolchain: $(rustup run nightly rustc --version)"
else
  export RUSTC_BOOTSTRAP=1
  echo "== toolchain: $(rustc --version) with RUSTC_BOOTSTRAP=1"
fi

# The same dependency versions as the workspace: start from its lock file.
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock

cd fuzz
mkdir -p logs
summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "regressions/$t" "artifacts/$t"
  echo "== $t: building"
  cargo "${toolchain[@]}" fuzz build --release --sanitizer "$sanitizer" "$t"
  echo "== $t: fuzzing for ${seconds}s"
  start=$(date +%s)
  # -timeout: one input may take 10 s (a plugin call has 2 s); -rss_limit_mb
  # covers the plugin engine. A crash stops the run; it is kept below.
  set +e
  cargo "${toolchain[@]}" fuzz run --release --sanitizer "$sanitizer" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    >"logs/$t.log" 2>&1
  status=$?
  set -e
  took=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
  crashes=$(find "artifacts/$t" -type f | wc -l)
  for f in $(find "artifacts/$t" -type f); do cp "$f" "regressions/$t/"; done
  echo "== $t: minimizing the corpus"
  cargo "${toolchain[@]}" fuzz cmin --release --sanitizer "$sanitizer" "$t" "corpus/$t" >"logs/$t.cmin.log" 2>&1 || true
  summary+=("$t: ${runs:-?} executions in ${took}s, exit $status, $crashes crash file(s), corpus $(ls "corpus/$t" | wc -l) inputs")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
