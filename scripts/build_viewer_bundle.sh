#!/usr/bin/env bash
# Rebuild src/handcast/render/assets/viewer.bundle.js (the viewer's JavaScript: three.js, its
# OrbitControls, fflate and viewer_app.js, bundled and minified with esbuild) from the npm registry.
# Needs node >= 18 and npm. Usage: scripts/build_viewer_bundle.sh   (run from anywhere)
set -euo pipefail

THREE_VERSION=0.187.0
FFLATE_VERSION=0.8.3
ESBUILD_VERSION=0.28.2

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
assets="$root/src/handcast/render/assets"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
printf '{"name":"handcast-viewer-build","private":true}\n' > package.json
npm install --silent --no-audit --no-fund --ignore-scripts \
    "three@$THREE_VERSION" "fflate@$FFLATE_VERSION" "esbuild@$ESBUILD_VERSION"
cp "$assets/viewer_app.js" "$work/viewer_app.js"

out="$work/viewer.bundle.js"
./node_modules/.bin/esbuild viewer_app.js --bundle --minify --format=iife --target=es2020 \
    --legal-comments=none --log-level=warning --outfile="$out"

{
  printf '/* handcast viewer bundle: three.js %s (MIT licence, the three.js authors), ' "$THREE_VERSION"
  printf 'fflate %s (MIT licence, Arjun Barrett), handcast viewer_app.js. ' "$FFLATE_VERSION"
  printf 'Built with esbuild %s by scripts/build_viewer_bundle.sh; licences in licenses/. */\n' "$ESBUILD_VERSION"
  cat "$out"
} > "$work/bundle_with_header.js"
if grep -qi '</script' "$work/bundle_with_header.js"; then
    echo "error: the bundle contains '</script' and cannot be inlined in a page" >&2
    exit 1
fi

mkdir -p "$assets/licenses"
cp node_modules/three/LICENSE "$assets/licenses/three.LICENSE.txt"
cp node_modules/fflate/LICENSE "$assets/licenses/fflate.LICENSE.txt"
tmp="$(mktemp "$assets/.viewer.bundle.js.XXXXXX")"
cp "$work/bundle_with_header.js" "$tmp"
chmod 644 "$tmp"
mv "$tmp" "$assets/viewer.bundle.js"
printf 'three=%s\nfflate=%s\nesbuild=%s\n' "$THREE_VERSION" "$FFLATE_VERSION" "$ESBUILD_VERSION" > "$assets/viewer.bundle.versions"
echo "wrote $assets/viewer.bundle.js ($(wc -c < "$assets/viewer.bundle.js") bytes)"
