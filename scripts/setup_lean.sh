#!/usr/bin/env bash
# Build the Lean project the verifier checks proofs in: Lean + Mathlib + the REPL at one pin profile.
#
#   bash scripts/setup_lean.sh                          # profile deepseek-v1.5 (the default)
#   bash scripts/setup_lean.sh --profile v4.15.0        # Lean v4.15.0 (Kimina-Prover-Preview's)
#   bash scripts/setup_lean.sh --profile v4.16.0        # any Lean release Mathlib and the REPL both tagged
#   bash scripts/setup_lean.sh --profile v4.15.0 --dry-run   # print the plan: revisions and commands
#
# Committed profiles live in lean/profiles/<name>/ (lean-toolchain, lakefile.lean, lake-manifest.json
# pinning every dependency by commit, profile.env); setup copies them to the repository root, which
# is the Lake project. `--dry-run` reads only those files: no network, no change. Needs git, curl,
# python3 and disk: ~6 GB with Mathlib's build cache; deepseek-v1.5 builds Mathlib from source (no
# prebuilt cache exists for DeepSeek's Mathlib fork), which takes about an hour on 16 cores.
#
# Steps: install elan and the toolchain, check the tag pins against their repositories, fetch the
# pinned dependencies, add a stdout flush to a REPL older than v4.10.0 (scripts/patch_repl_flush.py;
# without it every worker waits forever for its first answer), build the header module and the
# REPL, and check one proof through the REPL with its input kept open (scripts/repl_smoke.py).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

PROFILE=deepseek-v1.5
DRY_RUN=0
usage() { echo "usage: $0 [--profile deepseek-v1.5|v4.15.0|vX.Y.Z] [--dry-run]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --profile|--lean) [ $# -ge 2 ] || usage; PROFILE="$2"; shift 2 ;;
        --profile=*|--lean=*) PROFILE="${1#*=}"; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "error: unknown argument '$1'" >&2; usage ;;
    esac
done

PROFILE_DIR="lean/profiles/$PROFILE"
if [ -d "$PROFILE_DIR" ]; then
    COMMITTED=1
elif [[ "$PROFILE" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    COMMITTED=0
else
    echo "error: unknown profile '$PROFILE': choose one of $(ls lean/profiles | tr '\n' ' ')or a Lean release vX.Y.Z" >&2
    exit 2
fi
REPL_DIR=".lake/packages/REPL"
REPL="$ROOT/$REPL_DIR/.lake/build/bin/repl"
MATHLIB_CACHE=get
if [ "$COMMITTED" = 1 ]; then
    . "$PROFILE_DIR/profile.env"
    TOOLCHAIN="$(cat "$PROFILE_DIR/lean-toolchain")"
else
    TOOLCHAIN="leanprover/lean4:$PROFILE"
fi

# Print a step; run it unless this is a dry run.
step() {
    echo "+ $*"
    if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}

# The packages of a manifest, one per line: name url input-rev rev inherited.
manifest_rows() {
    python3 -c '
import json, sys
for p in json.load(open(sys.argv[1]))["packages"]:
    print(p["name"], p.get("url", "-"), p.get("inputRev") or "-", p.get("rev", "-"), "inherited" if p.get("inherited") else "direct")
' "$1"
}

# A direct dependency pinned by a tag must still have that tag at the pinned commit.
check_pin() {
    local name="$1" url="$2" input="$3" rev="$4" found
    [[ "$input" =~ ^[0-9a-f]{40}$ ]] && return 0  # pinned by commit: nothing can move
    found="$(git ls-remote "$url" "refs/tags/$input" "refs/tags/$input^{}" | sort -k2 | tail -1 | cut -f1)"
    if [ "$found" != "$rev" ]; then
        echo "error: $name: $url tag $input is at '${found:-missing}', the profile pins $rev" >&2
        exit 1
    fi
}

echo "Lean pin profile: $PROFILE$([ "$DRY_RUN" = 1 ] && echo ' (dry run: nothing is fetched or changed)')"
if [ "$COMMITTED" = 1 ]; then
    echo "  $PROFILE_DESCRIPTION"
    echo "  toolchain: $TOOLCHAIN"
    echo "  dependencies (lake-manifest.json; input rev = what lakefile.lean asks for):"
    manifest_rows "$PROFILE_DIR/lake-manifest.json" | while read -r name url input rev kind; do
        printf '    %-16s %-9s %-46s %-42s %s\n' "$name" "$kind" "$url" "$input" "$rev"
    done
else
    echo "  Lean release $PROFILE: Mathlib and the REPL at their tags $PROFILE (resolved by lake update)"
fi
echo

# The toolchain manager.
if ! command -v lake >/dev/null 2>&1; then
    if [ ! -x "$HOME/.elan/bin/lake" ]; then
        echo "+ curl -sSfL https://raw.githubusercontent.com/leanprover/elan/master/elan-init.sh | sh -s -- -y --default-toolchain none --no-modify-path"
        if [ "$DRY_RUN" = 0 ]; then
            curl -sSfL https://raw.githubusercontent.com/leanprover/elan/master/elan-init.sh \
                | sh -s -- -y --default-toolchain none --no-modify-path
        fi
    fi
    export PATH="$HOME/.elan/bin:$PATH"
fi

# The pins: a committed profile is copied to the root; any other release is resolved by `lake update`.
if [ "$COMMITTED" = 1 ]; then
    if [ -f .lake/prover-profile ] && [ "$(cat .lake/prover-profile)" != "$PROFILE" ]; then
        step rm -rf .lake/packages .lake/build .lake/prover-env.json  # other URLs and revisions
    fi
    step cp "$PROFILE_DIR/lean-toolchain" "$PROFILE_DIR/lakefile.lean" "$PROFILE_DIR/lake-manifest.json" .
    manifest_rows "$PROFILE_DIR/lake-manifest.json" | while read -r name url input rev kind; do
        if [ "$kind" = direct ]; then step check_pin "$name" "$url" "$input" "$rev"; fi
    done
else
    for repo in leanprover-community/mathlib4 leanprover-community/repl; do
        echo "+ git ls-remote --exit-code --tags https://github.com/$repo.git refs/tags/$PROFILE"
        if [ "$DRY_RUN" = 0 ] && ! git ls-remote --exit-code --tags "https://github.com/$repo.git" "refs/tags/$PROFILE" >/dev/null; then
            echo "error: $repo has no tag $PROFILE; pick a Lean release both projects tagged" >&2
            exit 1
        fi
    done
    echo "+ write lean-toolchain (leanprover/lean4:$PROFILE) and lakefile.lean (lean/profiles/v4.15.0's, tags $PROFILE)"
    if [ "$DRY_RUN" = 0 ]; then
        echo "$TOOLCHAIN" > lean-toolchain
        { echo "-- The Lean project proofs are checked in: Lean, Mathlib and the REPL at release $PROFILE"
          echo "-- (scripts/setup_lean.sh --profile $PROFILE; lake update wrote lake-manifest.json)."
          sed -E -e "s|(mathlib4\" @ \")[^\"]+\"|\1$PROFILE\"|" -e "s|(repl\" @ \")[^\"]+\"|\1$PROFILE\"|" -e '/^--/d' \
              lean/profiles/v4.15.0/lakefile.lean; } > lakefile.lean
    fi
    step rm -rf lake-manifest.json .lake/packages .lake/build .lake/prover-env.json
fi
step elan toolchain install "$TOOLCHAIN"
if [ "$COMMITTED" = 1 ]; then
    step lake env true  # clones the dependencies at the manifest's revisions
else
    step lake update  # resolves the tags and writes lake-manifest.json
fi

# A REPL older than v4.10.0 never flushes its answers (REPL PR #49): add the flush before building it.
step python3 scripts/patch_repl_flush.py "$REPL_DIR/REPL/Main.lean"

if [ "$MATHLIB_CACHE" = get ]; then
    echo "fetching Mathlib's build cache"
    step lake exe cache get
else
    echo "no prebuilt Mathlib cache for this profile: lake build compiles Mathlib from source"
fi
echo "building the header module (import Mathlib, import Aesop)"
step lake build
echo "building the REPL"
step lake build repl
if [ "$DRY_RUN" = 0 ] && [ ! -x "$REPL" ]; then
    echo "error: no REPL binary at $REPL after 'lake build repl'" >&2
    exit 1
fi

echo "smoke test: one proof through the REPL with its input kept open (importing Mathlib takes ~20 s)"
step python3 scripts/repl_smoke.py --timeout 600 -- lake env "$REPL"
if [ "$DRY_RUN" = 0 ]; then
    mkdir -p .lake && echo "$PROFILE" > .lake/prover-profile
fi

echo
if [ "$DRY_RUN" = 1 ]; then
    echo "dry run: nothing was fetched or changed"
    exit 0
fi
echo "Lean project ready: $PROFILE ($(cat lean-toolchain)), REPL at $REPL"
echo "Point the verifier to it, then run the self-test (honest proofs, known cheats, tactic mode):"
echo "  export PROVER_LEAN_PROJECT=$ROOT"
echo "  python -m prover.verify --selftest"
