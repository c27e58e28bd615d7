#!/usr/bin/env bash
# Fetches the Salamander Grand Piano V3 samples (Alexander Holm, CC BY 3.0) from the npm
# registry's @audio-samples packages into one folder, idempotently, checking each tarball
# against the sha512 pinned below:
#
#   bash scripts/fetch-salamander.sh            # all 17 packages (77 MB) → the default folder
#   bash scripts/fetch-salamander.sh --test DIR # velocity layer 8 and the releases (5.4 MB)
#
# The default folder is the one the trainer's `--instrument salamander` reads:
# ${XDG_CACHE_HOME:-~/.cache}/piano-ssm/salamander-1.0.5. Prints the folder on success.
set -euo pipefail

version=1.0.5
declare -A integrity=(
    [piano-velocity1]=sha512-vOVsX+44zvLG8hbWWXm/Nzb4wwc1E2oi7XRoPsDg3r5AtYawQPAx1jiK9zupke3IyBttMrOzrteCw47cCvqgcw==
    [piano-velocity2]=sha512-gUvqo2FDBIZoCYzc3/oAoWAzJiGefEfXTrY0NfoHSDosEo7L6MIGvVfr9pXKGJ5wYwFZxaJvVHjKtkAKVYDrMg==
    [piano-velocity3]=sha512-/+kUSi6sLJj8QUWGJG4073sEb5oJZI91j0RUhjWYPxiaas3xAO0UtE/Rv8DiMUsNSm9CNgHmRCmAyhbG6zmK/A==
    [piano-velocity4]=sha512-q7TqNxzGPpr+WsluagKkyU7DqpoXzU8YqOuV0N06g6FsiaC6swyQ9PSLUvbJwQ8wLn6dMKWfKfLPJLhJPjsdUQ==
    [piano-velocity5]=sha512-9mopzvI/Vh4N0ZZ3yItCn+943xa8a4dKxmEnurGNrOtolsrOj1mCUGgUELFjFn5y1+BviT6cpnw19SIjV2HuqQ==
    [piano-velocity6]=sha512-HHbZdZUJcLG67v1cOS+Y5UrpvhEc/oi+//+Cg/w5rGxTakDVoKV9U0ZBRvH0YtwxH2S0mmxCPsYGiJFALxI5kg==
    [piano-velocity7]=sha512-vKjgDqDZNdRsgkU67hg6YVZL6aXauVEMngJkLt/y2SOtEsHCV28diyjz0EsTpU2yEsADbtkrUuhsV3ZGbsxbLQ==
    [piano-velocity8]=sha512-/FNxSkeYe7TqzAb3/RynUvMoKqIA8/AQ8Riiy+v7h2PZufOZ7JU/e0SLGmjoYIIc/9Uy68Fi8jStf9V6s17YrA==
    [piano-velocity9]=sha512-8BsolA9rNMRyp5csqpDPdQd+u4VzB0L/Aq9fnhztR/sxIrRnHtxb6N8/AebqLhHx7saNHIzfGbdhWdrA4d6Dxw==
    [piano-velocity10]=sha512-u56gCoMSSy1uLUhCaXjaobBx90dD0e/Hec7K/oAkmyfdV6CtDim2Rd9hSL3TlCetiLe3iryffSgnhb7Bb+WmZg==
    [piano-velocity11]=sha512-XGPS5yv7bzTUSlHFeWD6aFjwAHbF+DcdHUsc4Ztb9ulOIy9eqsvAXzLnIwiQQiBzLM4amXHGqdgr8imqOkenrQ==
    [piano-velocity12]=sha512-nmMcTxU6PUmftOtOXhZXFT9pexWuHqn7Xxt4QwTKXoidKVqtU01LG2PuDQom5SkVcRkvRX7z85pko2a8UPS9Qw==
    [piano-velocity13]=sha512-osCvWunCx4wmL/Xb9SE1yxWgoqefs4wd77PhQSHH9Xz+5wDg5r3U+AopufCYqfC01x4w+IloyGhw5XA2Qvgh2g==
    [piano-velocity14]=sha512-2sfwNUnTr7IM/LzDbOoegzeH9xYfXjQUe1ccZXGKy4IW1vbKWSXP1FZJ3JR2QZzG2vr9K9Gm2y0IyAx7eg28qQ==
    [piano-velocity15]=sha512-kDnxYsvtvEUvoHAP+810KNty1E6HYoiB6HnlRyBu0faBTnhI1fk0QJVKdP2UD0bO7OfCdk0Q4jSBa/xGTI9c4Q==
    [piano-velocity16]=sha512-JhTYYAv30PXMa0yUpXHKp+OmOSduXcCVgtsMQN2U4i7YH/eUbr0hGlr0znDzuXXnoCa7KBpE9Li4Jknc1uPrrQ==
    [piano-release]=sha512-IGZ9nUEzD01V3k2kmQtobwTkTSXtpW1PBTGs7jsvwHm2Y/SY1ylMmWKZVnFV3vLXnV1mVOxEcReAQZJBW52R1A==
)

packages=()
for i in $(seq 1 16); do packages+=("piano-velocity$i"); done
packages+=(piano-release)
if [ "${1:-}" = "--test" ]; then
    packages=(piano-velocity8 piano-release)
    shift
fi
dir="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/piano-ssm/salamander-$version}"
mkdir -p "$dir"
command -v npm >/dev/null || { echo "error: npm is needed to fetch the samples (Debian: apt-get install npm)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for name in "${packages[@]}"; do
    done_mark="$dir/.fetched-$name-$version"
    [ -f "$done_mark" ] && continue
    (cd "$tmp" && npm pack --silent "@audio-samples/$name@$version" >/dev/null)
    tarball="$tmp/audio-samples-$name-$version.tgz"
    got="sha512-$(python3 -c 'import base64,hashlib,sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1],"rb").read()).digest()).decode())' "$tarball")"
    if [ "$got" != "${integrity[$name]}" ]; then
        echo "error: @audio-samples/$name@$version failed its integrity check ($got)" >&2
        exit 1
    fi
    mkdir -p "$tmp/$name"
    tar xzf "$tarball" -C "$tmp/$name"
    cp "$tmp/$name"/package/audio/*.ogg "$dir/"
    touch "$done_mark"
done
echo "$dir"
