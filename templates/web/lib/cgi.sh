# Helpers for the CGI scripts in /app/www/cgi-bin (sourced, not executed).
#
# busybox httpd hands a CGI script REQUEST_METHOD, QUERY_STRING (raw, not decoded) and, for
# POST only, CONTENT_LENGTH; the request body arrives on stdin. It relays the body for POST
# only: a PUT body is cut off after the first read buffer (under 1 KiB), so uploads use POST.
# Output must start with headers; a first "Status: ..." header sets the status line.

STORAGE_DIR=/app/storage

# respond STATUS [LINE...]: a text/plain response, then exit.
respond() {
  status=$1
  shift
  printf 'Status: %s\r\nContent-Type: text/plain; charset=utf-8\r\n' "$status"
  [ "$status" = "405 Method Not Allowed" ] && printf 'Allow: %s\r\n' "$ALLOW"
  printf '\r\n'
  [ $# -gt 0 ] && printf '%s\n' "$@"
  exit 0
}

# allow_methods M...: answers 405 unless REQUEST_METHOD is one of them.
allow_methods() {
  ALLOW=$(echo "$@" | sed 's/ /, /g')
  for m in "$@"; do
    [ "$REQUEST_METHOD" = "$m" ] && return 0
  done
  respond "405 Method Not Allowed" "method $REQUEST_METHOD not allowed here; use $ALLOW"
}

# query_param NAME: the raw value of NAME in the query string (first occurrence), or nothing.
query_param() {
  printf '%s\n' "$QUERY_STRING" | tr '&' '\n' | sed -n "s/^$1=//p" | head -n 1
}

# read_name: sets $name to the ?name= parameter, validated ([A-Za-z0-9._-]+, no leading dot);
# answers 400 otherwise. (Not used as $(read_name): respond must exit the script, not a subshell.)
read_name() {
  name=$(query_param name)
  case $name in
    '') respond "400 Bad Request" "missing ?name=<file>" ;;
    .* | *[!A-Za-z0-9._-]*) respond "400 Bad Request" "invalid name: use letters, digits, '.', '_' and '-', not starting with '.'" ;;
  esac
  [ ${#name} -le 255 ] || respond "400 Bad Request" "name too long (max 255)"
}
