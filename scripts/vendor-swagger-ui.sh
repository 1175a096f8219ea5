#!/usr/bin/env bash
# Vendors Swagger UI's browser files from the npm package swagger-ui-dist into
# internal/httpapi/docs/swagger-ui, where go:embed puts them into the binary:
# /docs then works with no internet. Run it to upgrade; commit the result.
#   scripts/vendor-swagger-ui.sh [VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-5.35.0}"
dest=internal/httpapi/docs/swagger-ui
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
mkdir -p "$dest"
for f in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE; do
	cp "$tmp/package/$f" "$dest/$f"
done
# The source maps are not vendored: drop the comments that point at them,
# or a browser's devtools would ask /docs for files that are not there.
sed -i '/^\/\/# sourceMappingURL=/d' "$dest/swagger-ui-bundle.js"
sed -i 's#/\*\# sourceMappingURL=[^*]*\*/##' "$dest/swagger-ui.css"
echo "$version" >"$dest/VERSION"
echo "swagger-ui-dist $version vendored into $dest"
