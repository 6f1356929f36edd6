#!/usr/bin/env bash
# Checks that a shared library exports exactly `count` defined dynamic symbols and
# that each matches `regex` (the C ABI only: no C++, SQLite or OpenSSL symbols leak).
# Usage: check_exports.sh <nm> <library> <regex> <count>
set -euo pipefail
nm=$1 lib=$2 regex=$3 count=$4
symbols=$("$nm" -D --defined-only "$lib" | awk '{print $3}' | sort)
total=$(printf '%s\n' "$symbols" | grep -c . || true)
stray=$(printf '%s\n' "$symbols" | grep -Ev "$regex" || true)
if [ -n "$stray" ]; then
  echo "unexpected exported symbols in $lib:"
  printf '%s\n' "$stray" | head -20
  exit 1
fi
if [ "$total" -ne "$count" ]; then
  echo "$lib exports $total symbols, expected $count:"
  printf '%s\n' "$symbols"
  exit 1
fi
echo "$lib: $total exported symbols, all matching $regex"
