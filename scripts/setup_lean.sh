#!/usr/bin/env bash
# Build the Lean project the verifier checks proofs in: Lean + Mathlib + the REPL at one pinned version.
#
#   bash scripts/setup_lean.sh                 # the pinned version (lean-toolchain: v4.9.0)
#   bash scripts/setup_lean.sh --lean v4.15.0  # move all three pins to another Lean release first
#
# Needs git, curl and about 6 GB of disk (Mathlib's build cache). Installs elan (the Lean toolchain
# manager) into ~/.elan when no `lake` is found, fetches Mathlib's prebuilt .olean files (building
# Mathlib from source takes hours), builds the header module and the REPL, runs one proof through
# the REPL as a smoke test, and prints what to export.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

if [ "${1:-}" = "--lean" ]; then
    VERSION="${2:?usage: $0 [--lean vX.Y.Z]}"
    # Mathlib and the REPL both tag releases after the Lean version they build with.
    for repo in leanprover-community/mathlib4 leanprover-community/repl; do
        if ! git ls-remote --exit-code --tags "https://github.com/$repo.git" "refs/tags/$VERSION" >/dev/null; then
            echo "error: $repo has no tag $VERSION; pick a Lean release both projects tagged" >&2
            exit 1
        fi
    done
    echo "leanprover/lean4:$VERSION" > lean-toolchain
    sed -i -E "s|(\.git\" @ \")v[^\"]+\"|\1$VERSION\"|" lakefile.lean
    rm -rf lake-manifest.json .lake/packages .lake/prover-env.json
    echo "pinned Lean, Mathlib and the REPL to $VERSION"
fi

if ! command -v lake >/dev/null 2>&1; then
    if [ ! -x "$HOME/.elan/bin/lake" ]; then
        echo "installing elan into ~/.elan"
        curl -sSfL https://raw.githubusercontent.com/leanprover/elan/master/elan-init.sh \
            | sh -s -- -y --default-toolchain none --no-modify-path
    fi
    export PATH="$HOME/.elan/bin:$PATH"
fi
elan toolchain install "$(cat lean-toolchain)"

if [ ! -f lake-manifest.json ]; then
    echo "resolving Mathlib and the REPL at $(grep -o '@ "v[^"]*"' lakefile.lean | head -1)"
    lake update
fi
echo "fetching Mathlib's build cache"
lake exe cache get
echo "building the header module (import Mathlib, import Aesop)"
lake build
echo "building the REPL"
lake build repl

REPL="$ROOT/.lake/packages/REPL/.lake/build/bin/repl"
if [ ! -x "$REPL" ]; then
    echo "error: no REPL binary at $REPL after 'lake build repl'" >&2
    exit 1
fi

echo "smoke test: one proof through the REPL (importing Mathlib takes ~20 s)"
ANSWER="$(printf '%s\n\n' '{"cmd": "import Mathlib\ntheorem smoke : (2 : ℕ) + 2 = 4 := by norm_num"}' | lake env "$REPL")"
if ! grep -q '"env": 0' <<<"$ANSWER" || grep -q '"severity": "error"' <<<"$ANSWER"; then
    echo "error: the REPL did not check the smoke proof; it answered:" >&2
    echo "$ANSWER" >&2
    exit 1
fi

echo
echo "Lean project ready: $(cat lean-toolchain), REPL at $REPL"
echo "Point the verifier to it:"
echo "  export PROVER_LEAN_PROJECT=$ROOT"
