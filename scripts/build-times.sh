#!/usr/bin/env bash
# Prints the build figures of the workspace layout (issue 10), each beside its goal:
#   1. `cargo build --release` after a one-line edit of an API handler;
#   2. the same after a one-line edit of the metrics store;
#   3. the README's run command (`cargo run --release -- run`, whose build step is
#      `cargo build --release`) right after its test command, and what it rebuilt;
#   4. with --ci: `.ci/run` on a fresh clone of HEAD (takes a quarter of an hour).
# Run from anywhere in the repository; it builds in the normal target directory
# (or $CARGO_TARGET_DIR) and leaves the tree as it found it.
set -euo pipefail
cd "$(dirname "$0")/.."

secs() { python3 -c 'import sys,time; print(f"{time.time()-float(sys.argv[1]):.1f}")' "$1"; }
now() { python3 -c 'import time; print(time.time())'; }
row() { printf '%-62s %10s s   goal <= %s s\n' "$1" "$2" "$3"; }

echo "== warming up: the README's test build, then the run build"
cargo test --release --workspace --all-targets --no-run -q 2>/dev/null
cargo build --release -q

# A real one-line edit, not only a touch: with incremental compilation a touch
# alone reuses every codegen unit, which would flatter the figure. The edit adds
# a statement to the body of function `$2` in file `$1`; the file is restored
# (and rebuilt, untimed) afterwards.
edit_and_build() {
  local file=$1 fn=$2 saved
  saved=$(mktemp)
  cp "$file" "$saved"
  python3 - "$file" "$fn" <<'PY'
import sys, re
path, fn = sys.argv[1], sys.argv[2]
s = open(path).read()
m = re.search(r"fn " + re.escape(fn) + r"\b[^{]*\{", s)
assert m, f"no fn {fn} in {path}"
s = s[:m.end()] + "\n    std::hint::black_box(0x5eed_u32);" + s[m.end():]
open(path, "w").write(s)
PY
  local t; t=$(now)
  cargo build --release -q
  secs "$t"
  cp "$saved" "$file"
  rm -f "$saved"
  cargo build --release -q
}

echo "== figures"
api=$(edit_and_build host/api/src/health.rs status)
row "cargo build --release after editing a line of host/api/src/health.rs" "$api" 20
store=$(edit_and_build host/metrics/src/store.rs series_count)
row "cargo build --release after editing a line of host/metrics/src/store.rs" "$store" 30

# The test command, then the run command's build: nothing of the dependencies
# may be rebuilt (features unified, see the workspace Cargo.toml).
cargo test --release --workspace --all-targets --no-run -q 2>/dev/null
t=$(now)
rebuilt=$(cargo build --release 2>&1 | grep -c '^ *Compiling' || true)
after=$(secs "$t")
row "the README's run command right after its test command" "$after" 5
echo "   crates recompiled by it: $rebuilt"

if [ "${1:-}" = "--ci" ]; then
  dir=$(mktemp -d)
  git clone -q . "$dir/warden"
  t=$(now)
  (cd "$dir/warden" && env -u CARGO_TARGET_DIR .ci/run >"$dir/ci.log" 2>&1) || { echo "CI failed, see $dir/ci.log"; exit 1; }
  ci=$(secs "$t")
  row ".ci/run on a fresh clone (minutes: $(python3 -c "print(round($ci/60,1))"))" "$ci" 720
  rm -rf "$dir"
fi
