//! qemu's isa-debug-exit device at I/O port 0xf4: a byte V written there makes qemu exit with
//! (V << 1) | 1. The guest kernel has no /dev/port, so the probe asks for access to that one
//! port (ioperm, CAP_SYS_RAWIO) and writes it itself.
//! Runs in: the probe, on x86_64.

use std::io;

/// The debug-exit device's port (`-device isa-debug-exit,iobase=0xf4`).
const DEBUG_EXIT: u16 = 0xf4;

/// Writes `value` to the debug-exit port; qemu ends the VM there and then, so this returns
/// only what went wrong.
pub fn exit(value: u8) -> String {
    // SAFETY: ioperm only changes this thread's I/O permission bitmap for one port.
    let granted = unsafe { libc::ioperm(libc::c_ulong::from(DEBUG_EXIT), 1, 1) };
    if granted != 0 {
        return format!(
            "cannot use I/O port {DEBUG_EXIT:#x} (ioperm, needs CAP_SYS_RAWIO): {}",
            io::Error::last_os_error()
        );
    }
    // SAFETY: the port was granted above; writing it touches no memory, and qemu's debug-exit
    // device is the only thing at that address on the VMs the probe runs in.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") DEBUG_EXIT, in("al") value, options(nomem, nostack, preserves_flags));
    }
    format!(
        "wrote {value} to I/O port {DEBUG_EXIT:#x} but the VM goes on: no isa-debug-exit device"
    )
}
