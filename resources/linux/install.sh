#!/bin/sh
# Install a one-folder build (dist/cukd-image-search) for the current user:
#   sh resources/linux/install.sh [BUNDLE_DIR]
# Copies the bundle to ~/.local/lib/cukd-image-search, links ~/.local/bin/cukd-app, and adds
# the desktop entry and icon. Remove with: sh resources/linux/install.sh --uninstall
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
lib=$HOME/.local/lib/cukd-image-search
bin=$HOME/.local/bin
if [ "${1:-}" = "--uninstall" ]; then
    rm -rf "$lib" "$bin/cukd-app" "$data/applications/cukd-image-search.desktop" \
        "$data/icons/hicolor/256x256/apps/cukd-app.png"
    exit 0
fi
bundle=${1:-dist/cukd-image-search}
[ -x "$bundle/cukd-app" ] || { echo "no build at $bundle (run: pyinstaller build.spec)" >&2; exit 1; }
mkdir -p "$lib" "$bin" "$data/applications" "$data/icons/hicolor/256x256/apps"
rm -rf "$lib" && cp -a "$bundle" "$lib"
ln -sf "$lib/cukd-app" "$bin/cukd-app"
cp "$here/cukd-image-search.desktop" "$data/applications/"
cp "$here/../icons/cukd-app.png" "$data/icons/hicolor/256x256/apps/cukd-app.png"
command -v update-desktop-database >/dev/null && update-desktop-database "$data/applications" || true
echo "installed: $bin/cukd-app (make sure $bin is on PATH)"
