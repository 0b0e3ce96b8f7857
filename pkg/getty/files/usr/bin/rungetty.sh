#!/bin/sh
# Keeps a shell (or a login prompt) on each console named by console= on the kernel command
# line (ttyS0, tty0, hvc0...; /dev/console when none is named), starting it again when it ends.
#
# Each console's loop is started through the container init: a command a shell puts in the
# background inherits SIGINT and SIGQUIT ignored, and so would every shell the loop starts.
# The init starts it with default dispositions, and the loop starts its shell in the
# foreground, a session leader with the console as its controlling terminal.
init=/sbin/kiln-init

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

if [ "$1" = serve ]; then
    serve "$2"
    exit
fi

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

for tty in $consoles; do
    [ -c "/dev/$tty" ] || { echo "getty: /dev/$tty is not a terminal; skipped" >&2; continue; }
    if [ -x "$init" ]; then
        "$init" -- "$0" serve "$tty" &
    else
        echo "getty: no $init (runtime init: false): Ctrl-C will not reach the shell on $tty" >&2
        serve "$tty" &
    fi
done
wait
