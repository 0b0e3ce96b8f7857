//! Choosing qemu's accelerator: `--accel auto` takes KVM only where /dev/kvm really runs a
//! guest at hardware speed, else TCG. Opening /dev/kvm is not enough: a nested or emulated KVM
//! can create VMs that then run every instruction in software, so slowly that a kernel never
//! prints its first line. The check runs a real-mode loop of 65,536 iterations in a VM of one
//! page: hardware does it in well under a millisecond, an emulating KVM takes a hundred or more.
//! Runs in: `kiln run`, on the build host, as a user who may open /dev/kvm (or not).
#![allow(
    unsafe_code,
    reason = "a VM's memory is a raw mapping handed to the kernel; see each SAFETY"
)]

use std::fmt;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::str::FromStr;
use std::time::{Duration, Instant};

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};
use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

/// The test guest runs slower than this: KVM is not worth using.
const FAST_ENOUGH: Duration = Duration::from_millis(20);
/// Where the test guest's one page is, in guest physical memory.
const GUEST_PAGE: u64 = 0x1000;
const PAGE_SIZE: usize = 0x1000;
/// `mov ecx, 0x10000; l: dec ecx; jnz l; hlt`, in 16-bit real mode.
const LOOP_THEN_HALT: [u8; 11] = [
    0x66, 0xb9, 0x00, 0x00, 0x01, 0x00, 0x66, 0x49, 0x75, 0xfc, 0xf4,
];

/// What `--accel` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM where it works at hardware speed, else TCG.
    Auto,
    /// qemu's software emulation.
    Tcg,
    /// KVM, whether or not the check passes.
    Kvm,
}

impl FromStr for Accel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            "tcg" => Ok(Self::Tcg),
            "kvm" => Ok(Self::Kvm),
            _ => Err(format!("`{text}`: unknown accelerator (auto, kvm or tcg)")),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Tcg => "tcg",
            Self::Kvm => "kvm",
        })
    }
}

/// The accelerator qemu gets (`kvm` or `tcg`) and, for `auto`, why.
pub fn choose(accel: Accel) -> (&'static str, Option<String>) {
    match accel {
        Accel::Tcg => ("tcg", None),
        Accel::Kvm => ("kvm", None),
        Accel::Auto => match kvm_test_guest() {
            Ok(took) if took <= FAST_ENOUGH => (
                "kvm",
                Some(format!(
                    "/dev/kvm ran a test guest in {:.3} ms",
                    took.as_secs_f64() * 1000.0
                )),
            ),
            Ok(took) => (
                "tcg",
                Some(format!(
                    "/dev/kvm emulates: its test guest took {:.0} ms",
                    took.as_secs_f64() * 1000.0
                )),
            ),
            Err(why) => ("tcg", Some(why)),
        },
    }
}

/// One page of anonymous memory, the test guest's RAM; unmapped when dropped.
struct Page(NonNull<std::ffi::c_void>);

impl Page {
    fn new() -> Result<Self, String> {
        let length = NonZeroUsize::new(PAGE_SIZE).ok_or("page size")?;
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing
        // aliases nothing in this process.
        let memory = unsafe {
            mmap_anonymous(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .map_err(|err| format!("cannot map memory for a test guest: {err}"))?;
        Ok(Self(memory))
    }

    fn write(&mut self, code: &[u8]) {
        let len = code.len().min(PAGE_SIZE);
        // SAFETY: the mapping is PAGE_SIZE bytes, writable and owned by self alone; at most
        // that many bytes are copied from a separate slice.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.0.as_ptr().cast::<u8>(), len) }
    }

    fn address(&self) -> u64 {
        self.0.as_ptr() as u64
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by Page::new with PAGE_SIZE bytes and is unmapped
        // once, here; the VM that used it is dropped before (it is declared after the page).
        let _ = unsafe { munmap(self.0, PAGE_SIZE) };
    }
}

/// Runs the loop guest in a new VM and returns how long it took to halt.
fn kvm_test_guest() -> Result<Duration, String> {
    let mut page = Page::new()?;
    page.write(&LOOP_THEN_HALT);
    let kvm = Kvm::new().map_err(|err| format!("cannot open /dev/kvm: {err}"))?;
    let vm = kvm
        .create_vm()
        .map_err(|err| format!("/dev/kvm cannot create a VM: {err}"))?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: GUEST_PAGE,
        memory_size: PAGE_SIZE as u64,
        userspace_addr: page.address(),
        flags: 0,
    };
    // SAFETY: the region is the page mapped above, which outlives `vm` (declared before it,
    // so dropped after it) and which nothing else in this process uses.
    unsafe { vm.set_user_memory_region(region) }
        .map_err(|err| format!("/dev/kvm cannot give a VM memory: {err}"))?;
    let mut vcpu = vm
        .create_vcpu(0)
        .map_err(|err| format!("/dev/kvm cannot create a vCPU: {err}"))?;
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|err| format!("/dev/kvm: get_sregs: {err}"))?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)
        .map_err(|err| format!("/dev/kvm: set_sregs: {err}"))?;
    let mut regs = vcpu
        .get_regs()
        .map_err(|err| format!("/dev/kvm: get_regs: {err}"))?;
    regs.rip = GUEST_PAGE;
    regs.rflags = 2;
    vcpu.set_regs(&regs)
        .map_err(|err| format!("/dev/kvm: set_regs: {err}"))?;
    let start = Instant::now();
    match vcpu.run() {
        Ok(VcpuExit::Hlt) => Ok(start.elapsed()),
        Ok(other) => Err(format!(
            "/dev/kvm's test guest stopped unexpectedly ({other:?})"
        )),
        Err(err) => Err(format!("/dev/kvm cannot run a vCPU: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accelerators_parse() {
        assert_eq!("auto".parse(), Ok(Accel::Auto));
        assert_eq!("kvm".parse(), Ok(Accel::Kvm));
        assert_eq!("tcg".parse(), Ok(Accel::Tcg));
        let err = "hvf".parse::<Accel>().unwrap_err();
        assert!(err.contains("unknown accelerator"), "{err}");
        assert_eq!(choose(Accel::Tcg), ("tcg", None));
        assert_eq!(choose(Accel::Kvm), ("kvm", None));
    }

    #[test]
    fn auto_says_why_it_chose() {
        let (accel, why) = choose(Accel::Auto);
        let why = why.expect("auto says why");
        match accel {
            "kvm" => assert!(why.contains("ran a test guest"), "{why}"),
            "tcg" => assert!(
                why.contains("/dev/kvm") || why.contains("test guest"),
                "{why}"
            ),
            other => panic!("unexpected accelerator {other}"),
        }
    }
}
