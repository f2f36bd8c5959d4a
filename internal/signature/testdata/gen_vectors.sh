#!/usr/bin/env bash
# Regenerates vectors.txt from the commands below, outside Go, with openssl.
# Each cmd is run verbatim with bash and its output becomes sig; the command
# text itself is written into the file beside the result.
#
#   cd internal/signature/testdata && LC_ALL=C.UTF-8 ./gen_vectors.sh > vectors.txt
#
# Bodies and keys are single-quoted in the commands, so they must not contain
# a single quote; they are passed to printf '%s', so backslashes stay literal.
set -euo pipefail

emit() { # name scheme key path body ts
	local name=$1 scheme=$2 key=$3 path=$4 body=$5 ts=$6 msg cmd sig
	case $scheme in
	body) msg="$body$ts" ;;
	uri_body) msg="$path$body$ts" ;;
	*) echo "unknown scheme $scheme" >&2; exit 1 ;;
	esac
	cmd="printf '%s' '$msg' | openssl dgst -sha256 -hmac '$key' -binary | base64"
	sig=$(bash -c "$cmd")
	field name "$name"
	field scheme "$scheme"
	field key "$key"
	field path "$path"
	field body "$body"
	field ts "$ts"
	field cmd "$cmd"
	field sig "$sig"
	echo
}

field() { # name value: "name: value", or "name:" when value is empty
	if [ -z "$2" ]; then printf '%s:\n' "$1"; else printf '%s: %s\n' "$1" "$2"; fi
}

cat <<HEADER
# Known-answer vectors for package signature, produced outside Go by
# gen_vectors.sh ($(openssl version | cut -d' ' -f1-2)). Records are separated by a blank
# line. Each line is "field: value"; the value is the rest of the line after
# ": ", byte for byte (no trimming); an empty value is written "field:".
# cmd is the exact command whose output is sig. path is empty for scheme body.

HEADER

emit spec-example-body body bf7769e5321448de88838cdb '' \
	'{"callNum":"010-1234-5678","nation":"82"}' 1764466000000
emit spec-example-uri-body uri_body bf7769e5321448de88838cdb /v1/lookups/customer \
	'{"callNum":"010-1234-5678","nation":"82"}' 1764466000000
emit korean-body body bf7769e5321448de88838cdb '' \
	'{"callNum":"010-1234-5678","userName":"홍길동","memo":"고객 문의 – 환불"}' 1764466012345
emit korean-uri-body uri_body 3f2a9c0b7d4e1f6a8b5c2d90 /v1/lookups/customer \
	'{"callNum":"02-555-0199","nation":"82","userName":"김철수"}' 1764466099999
emit escaped-unicode-body body bf7769e5321448de88838cdb '' \
	'{"callNum":"010-1234-5678","userName":"\uD64D\uAE38\uB3D9"}' 1764466000000
emit number-field-body body 3f2a9c0b7d4e1f6a8b5c2d90 '' \
	'{"callNum":1012345678,"nation":82}' 1764466000001
emit empty-body body bf7769e5321448de88838cdb '' '' 1764466000000
emit spaced-json-body body bf7769e5321448de88838cdb '' \
	'{ "callNum" : "010-1234-5678" , "nation" : "82" }' 1764466000000
