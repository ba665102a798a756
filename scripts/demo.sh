#!/usr/bin/env bash
# The main job, end to end on this machine: installs berth (install.sh, which starts the proxy),
# creates the app `demo` at the domain demo.localhost, deploys templates/web with a real
# `git push`, stores a file through the proxy, pushes a change, and shows the file served by
# the new release at the same URL. Needs root. Re-runnable.
set -euo pipefail
cd "$(dirname "$0")/.."
export BERTH_ROOT="${BERTH_ROOT:-/var/lib/berth}"
PREFIX="${PREFIX:-/usr/local}"
APP="${APP:-demo}"
BERTH_USER="${BERTH_USER:-berth}"
BERTH="$PREFIX/bin/berth"
DOMAIN="${DOMAIN:-$APP.localhost}"

say() { echo "=====> $*"; }

bash ./install.sh --prefix "$PREFIX" --root "$BERTH_ROOT"

say "Creating app $APP at $DOMAIN"
"$BERTH" apps:report "$APP" >/dev/null 2>&1 || "$BERTH" apps:create "$APP"
"$BERTH" domains:set "$APP" "$DOMAIN"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r templates/web/. "$work/"
git -C "$work" init -q -b main
git -C "$work" -c user.name=berth-demo -c user.email=demo@localhost add -A
git -C "$work" -c user.name=berth-demo -c user.email=demo@localhost commit -qm "Deploy the sample web app"

say "git push (first deploy)"
push() { # as the berth user, like a push over SSH: the hooks run as berth
  chown -R "$BERTH_USER:$BERTH_USER" "$work"
  runuser -u "$BERTH_USER" -- env HOME="$(getent passwd "$BERTH_USER" | cut -d: -f6)" \
    git -C "$work" push "$@" "$BERTH_ROOT/repos/$APP.git" main
}
push --force

url=$("$BERTH" ps:report "$APP" --ps-web-url)
first_url=$url
say "Serving on $url (through the proxy on 127.0.0.1:80)"
printf 'hello from the first release, %s\n' "$(date -u +%FT%TZ)" >"$work/../berth-demo-note.txt"
http() { # method path [file]: a tiny HTTP client with no dependencies beyond bash, through the proxy
  local method=$1 path=$2 file=${3:-}
  exec 3<>"/dev/tcp/127.0.0.1/80"
  if [ -n "$file" ]; then
    printf '%s %s HTTP/1.0\r\nHost: %s\r\nContent-Length: %s\r\n\r\n' "$method" "$path" "$DOMAIN" "$(wc -c <"$file")" >&3
    cat "$file" >&3
  else
    printf '%s %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$method" "$path" "$DOMAIN" >&3
  fi
  sed '1,/^\r$/d' <&3
  exec 3<&-
}
http POST "/cgi-bin/upload?name=note.txt" "$work/../berth-demo-note.txt"
echo

say "git push (a change: redeploy)"
echo "<!-- redeployed $(date -u +%FT%TZ) -->" >>"$work/www/index.html"
git -C "$work" -c safe.directory="$work" -c user.name=berth-demo -c user.email=demo@localhost commit -qam "Redeploy"
push

url=$("$BERTH" ps:report "$APP" --ps-web-url)
[ "$url" = "$first_url" ] || { echo " !     the URL changed: $first_url, then $url" >&2; exit 1; }
say "The stored file, served by the new release at the same URL, $url:"
http GET "/cgi-bin/file?name=note.txt"
"$BERTH" releases "$APP"
"$BERTH" storage:list "$APP"
rm -f "$work/../berth-demo-note.txt"
say "Done: $APP serves on $url; its uploads live in $BERTH_ROOT/data/apps/$APP/uploads"
