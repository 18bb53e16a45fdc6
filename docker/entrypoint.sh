#!/bin/sh
# Renders the shipped config templates with the secrets from the environment, then
# runs Redis without those secrets in its environment (docs/security.md).
#
#   entrypoint.sh TEMPLATE=OUTPUT [TEMPLATE=OUTPUT ...] -- COMMAND [ARGS ...]
#
# In each TEMPLATE, ${NAME} becomes the value of the environment variable NAME, and
# #${NAME} becomes # and the SHA-256 of that value (how an ACL file holds a password);
# lines starting with # are left out. A value must be 16 or more of A-Z a-z 0-9 . _ + / = -
# (openssl rand -hex 32 makes one). A missing or unusable value stops the container
# before Redis starts; nothing is half written. Values never appear on a command line:
# the substitution is done by this shell itself (printf is a builtin), and the
# hash is computed from standard input. ponos_redis._acl.render does the same in Python.
#
# COMMAND is run through the image's docker-entrypoint.sh when there is one (the
# official redis image: it runs redis-server as the redis user, not root).
set -eu
umask 077

fail() {
    echo "entrypoint.sh: $*" >&2
    [ -z "${partial:-}" ] || rm -f "$partial"
    exit 1
}

value_of() {
    # The value of the variable named $1 (a checked name: [A-Z_][A-Z0-9_]*).
    eval "[ \"\${$1+set}\" = set ]" || fail "$1 is not set (needed by $template)"
    eval "value=\$$1"
    case $value in
        *[!A-Za-z0-9._+/=-]*) fail "$1 must be 16 or more of A-Z a-z 0-9 . _ + / = - (openssl rand -hex 32)" ;;
    esac
    [ "${#value}" -ge 16 ] || fail "$1 must be 16 or more of A-Z a-z 0-9 . _ + / = - (openssl rand -hex 32)"
}

render() {
    template=$1
    output=$2
    [ -r "$template" ] || fail "cannot read $template"
    partial="$output.partial"
    : >"$partial"
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in
            '#'*) continue ;;
        esac
        out=""
        while :; do
            case $line in
                *'${'*'}'*) ;;
                *) break ;;
            esac
            before=${line%%'${'*}
            rest=${line#*'${'}
            name=${rest%%'}'*}
            line=${rest#*'}'}
            case $name in
                '' | [!A-Z_]* | *[!A-Z0-9_]*) fail "$template: \${$name} is not a variable name" ;;
            esac
            value_of "$name"
            case $before in
                *'#')
                    hash=$(printf '%s' "$value" | sha256sum)
                    out="$out$before${hash%% *}"
                    ;;
                *) out="$out$before$value" ;;
            esac
        done
        printf '%s\n' "$out$line" >>"$partial"
    done <"$template"
    mv "$partial" "$output"
}

while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    case $1 in
        *=*) render "${1%%=*}" "${1#*=}" ;;
        *) fail "expected TEMPLATE=OUTPUT or --, got $1" ;;
    esac
    shift
done
[ "$#" -gt 1 ] || fail "usage: entrypoint.sh TEMPLATE=OUTPUT ... -- COMMAND [ARGS ...]"
shift

# The rendered files hold what Redis needs; the server itself needs no secret in its environment.
for name in $(env | sed -n 's/^\(PONOS_[A-Z0-9_]*PASSWORD\)=.*/\1/p'); do
    unset "$name"
done
unset value

if command -v docker-entrypoint.sh >/dev/null 2>&1; then
    exec docker-entrypoint.sh "$@"
fi
exec "$@"
