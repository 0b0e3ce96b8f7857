#!/bin/sh
# Keeps a shell (or a login prompt) on each console named by console= on the kernel command
# line (ttyS0, tty0, hvc0...; /dev/console when none is named), starting it again when it ends.
consoles=""
for word in $(cat /proc/cmdline); do
    case "$word" in
        console=*)
            name=${word#console=}
            consoles="$consoles ${name%%,*}"
            ;;
    esac
done
[ -n "$consoles" ] || consoles=console

serve() {
    tty=$1
    while :; do
        if [ "$INSECURE" = true ]; then
            setsid -c /bin/sh -l <"/dev/$tty" >"/dev/$tty" 2>&1
        else
            setsid getty -L 115200 "$tty" vt100
        fi
        sleep 1
    done
}

for tty in $consoles; do
    [ -c "/dev/$tty" ] || { echo "getty: /dev/$tty is not a terminal; skipped" >&2; continue; }
    serve "$tty" &
done
wait
