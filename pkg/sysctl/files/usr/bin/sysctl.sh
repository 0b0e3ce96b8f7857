#!/bin/sh
# Applies every /etc/sysctl.d/*.conf in name order; exits 1 if any setting failed.
status=0
for conf in /etc/sysctl.d/*.conf; do
    [ -e "$conf" ] || continue
    sysctl -p "$conf" || status=1
done
exit $status
