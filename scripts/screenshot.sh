#!/usr/bin/env bash
# Opens the standalone app's panel under Xvfb (no audio: --backend dummy) and saves a
# screenshot. usage: scripts/screenshot.sh OUT.png [XDG_DATA_HOME with a model folder]
set -euo pipefail
cd "$(dirname "$0")/.."
out="$1"
data="${2:-${XDG_DATA_HOME:-$HOME/.local/share}}"
display=":$(( 90 + RANDOM % 9 ))"
Xvfb "$display" -screen 0 1024x768x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill "$app" "$xvfb" 2>/dev/null || true' EXIT
sleep 1
DISPLAY="$display" XDG_DATA_HOME="$data" target/release/piano-ssm-standalone --backend dummy >/dev/null 2>&1 &
app=$!
window=$(DISPLAY="$display" timeout 60 xdotool search --sync --name "Piano-SSM" | head -n 1)
sleep 3 # let the panel draw a few frames (meters, model info)
DISPLAY="$display" import -window "$window" "$out"
echo "saved $out"
