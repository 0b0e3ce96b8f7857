#!/bin/sh
# Starts sshd in the foreground, its log on stderr (the service's log). The host keys it lacks
# are made first (ed25519, ECDSA and RSA, as `ssh-keygen -A`) in /etc/ssh/keys, where a disk's
# directory may be bound to keep them across boots; the privilege separation directory is made.
set -e
keys=/etc/ssh/keys
mkdir -p -m 0755 "$keys" /run/sshd
# /root/.ssh may be the host's, bound in read-only: made only when missing.
[ -d /root/.ssh ] || mkdir -p -m 0700 /root/.ssh
for type in ed25519 ecdsa rsa; do
    key="$keys/ssh_host_${type}_key"
    if [ ! -s "$key" ]; then
        rm -f "$key" "$key.pub"
        ssh-keygen -q -t "$type" -N "" -C "root@$(hostname)" -f "$key"
        echo "sshd: made the $type host key $(ssh-keygen -l -f "$key.pub" | cut -d' ' -f2)" >&2
    fi
done
exec /usr/sbin/sshd -D -e
