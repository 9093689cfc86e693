//! Memory maps that survive their file being truncated under them.
//!
//! Query files are memory-mapped. When a mapped file is truncated in place (a new index
//! copied over a served one with `cp` or `rsync --inplace`, a tool that rewrites
//! files), reading a page past the new end raises `SIGBUS`, whose default action kills
//! the process: one careless copy would take down `saeidx serve` or a Python session.
//! The ways to survive it, and why this one:
//!
//! - *copy-on-open* (read every file into memory when opening): costs the index's whole
//!   size in memory and in cold-start time (1.3 GB on the benchmark index), where
//!   opening now reads only the files' framing;
//! - *checking sizes before each access*: racy, the truncation can land between the
//!   check and the read;
//! - *file leases* (`F_SETLEASE`): only for the file's owner, only on local file
//!   systems, and the copying process blocks for the lease-break time;
//! - **a `SIGBUS` handler** (this module): mappings register their address range here;
//!   a fault inside a registered range maps a zero page over the faulting page (the
//!   read goes on and sees zeros) and marks the mapping as damaged. A fault anywhere
//!   else goes to the handler that was installed before (or the default action), so
//!   other code sees no difference. Answers are checked against the mark after they
//!   are computed ([`crate::QueryIndex::check_intact`]) and returned as
//!   [`crate::QueryError::Changed`] instead; the caller reopens the index. Every byte
//!   the reader uses is bounds-checked, so zeros read this way give at worst a wrong
//!   intermediate result, which the check then discards.
//!
//! The handler does async-signal-safe work only: atomic loads and stores on a fixed
//! table and one `mmap` system call. The table holds [`SLOTS`] mappings (five per open
//! index); a mapping that finds it full is served unprotected, as before this module.

use std::sync::{
    Once,
    atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering},
};

/// Mappings protected at once.
pub const SLOTS: usize = 4096;

/// A slot being set up or torn down (never a mapping's start address).
const BUSY: usize = usize::MAX;

/// One registered mapping: `start..end`, and whether a fault was answered in it.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    faulted: AtomicBool,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        faulted: AtomicBool::new(false),
    }
}; SLOTS];

static INSTALL: Once = Once::new();
static PAGE: AtomicUsize = AtomicUsize::new(0);
/// The `SIGBUS` disposition before ours (leaked once, read by the handler).
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());

/// A mapping's registration: while it lives, faults in the range are answered with
/// zero pages. Drop it before the range is unmapped.
#[derive(Debug)]
pub(crate) struct Registration {
    slot: Option<usize>,
}

impl Registration {
    /// Registers the mapped range `start..start + len`.
    pub(crate) fn new(start: *const u8, len: usize) -> Self {
        install();
        let (start, end) = (start as usize, (start as usize).saturating_add(len));
        if len == 0 || start == 0 {
            return Self { slot: None };
        }
        for (i, slot) in TABLE.iter().enumerate() {
            if slot
                .start
                .compare_exchange(0, BUSY, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                slot.faulted.store(false, Ordering::Release);
                slot.end.store(end, Ordering::Release);
                slot.start.store(start, Ordering::Release);
                return Self { slot: Some(i) };
            }
        }
        Self { slot: None }
    }

    /// What tells, while the mapping lives, whether a fault was answered in it.
    pub(crate) fn probe(&self) -> FaultProbe {
        FaultProbe { slot: self.slot }
    }

    /// Whether a read past the file's end was answered with zeros.
    #[cfg(test)]
    fn faulted(&self) -> bool {
        self.probe().faulted()
    }
}

/// A registration's mark, readable by whoever keeps the mapping alive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FaultProbe {
    slot: Option<usize>,
}

impl FaultProbe {
    /// Whether a read past the file's end was answered with zeros (valid while the
    /// registered mapping lives).
    pub(crate) fn faulted(self) -> bool {
        self.slot
            .is_some_and(|i| TABLE[i].faulted.load(Ordering::Acquire))
    }
}

/// A read-only file mapping registered with the handler for as long as it is mapped.
pub(crate) struct GuardedMap {
    // Declared first: dropped (unregistered) before the map is unmapped.
    registration: Registration,
    map: memmap2::Mmap,
}

impl GuardedMap {
    /// Registers `map`.
    pub(crate) fn new(map: memmap2::Mmap) -> Self {
        Self {
            registration: Registration::new(map.as_ptr(), map.len()),
            map,
        }
    }

    /// The registration's mark.
    pub(crate) fn probe(&self) -> FaultProbe {
        self.registration.probe()
    }
}

impl AsRef<[u8]> for GuardedMap {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let slot = &TABLE[i];
            slot.start.store(BUSY, Ordering::Release);
            slot.end.store(0, Ordering::Release);
            slot.faulted.store(false, Ordering::Release);
            slot.start.store(0, Ordering::Release);
        }
    }
}

/// Installs the handler (once per process).
fn install() {
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        PAGE.store(usize::try_from(page).unwrap_or(4096), Ordering::Release);
        // SAFETY: a zeroed sigaction is a valid value to fill; the handler has the
        // signature SA_SIGINFO requires; `previous` is written by the call.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            let previous = Box::into_raw(Box::new(std::mem::zeroed::<libc::sigaction>()));
            if libc::sigaction(libc::SIGBUS, &action, previous) == 0 {
                PREVIOUS.store(previous, Ordering::Release);
            } else {
                drop(Box::from_raw(previous));
            }
        }
    });
}

/// The `SIGBUS` handler: see the module docs.
extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let address = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Acquire).max(1);
    for slot in &TABLE {
        let start = slot.start.load(Ordering::Acquire);
        if start == 0 || start == BUSY {
            continue;
        }
        let end = slot.end.load(Ordering::Acquire);
        if address < start || address >= end {
            continue;
        }
        let base = address & !(page - 1);
        // SAFETY: the page lies inside a registered read-only file mapping that is
        // still mapped (registrations end before their mapping is unmapped); replacing
        // it with a private zero page changes only what reads of it return.
        let mapped = unsafe {
            libc::mmap(
                base as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if mapped != libc::MAP_FAILED {
            slot.faulted.store(true, Ordering::Release);
            return;
        }
        break;
    }
    // Not ours: what would have happened without this handler.
    let previous = PREVIOUS.load(Ordering::Acquire);
    // SAFETY: `previous` was filled by sigaction and is never freed; calling the
    // previous handler with the arguments the kernel gave us is what it expects.
    unsafe {
        let handler = if previous.is_null() {
            libc::SIG_DFL
        } else {
            (*previous).sa_sigaction
        };
        if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
            // Restore the default action; returning re-runs the faulting access, which
            // then ends the process as it would have.
            libc::signal(signal, libc::SIG_DFL);
        } else if (*previous).sa_flags & libc::SA_SIGINFO != 0 {
            let chained: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(handler);
            chained(signal, info, context);
        } else {
            let chained: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
            chained(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_truncated_mapping_reads_zeros_and_is_marked() {
        let mut file = tempfile::tempfile().unwrap();
        let page = PAGE.load(Ordering::Acquire).max(4096);
        file.write_all(&vec![7u8; page * 3]).unwrap();
        // SAFETY: the test owns the file.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let registration = Registration::new(map.as_ptr(), map.len());
        assert!(!registration.faulted());
        file.set_len(page as u64).unwrap();
        let tail = std::hint::black_box(&map[page * 2..]);
        assert!(tail.iter().all(|byte| *byte == 0));
        assert!(registration.faulted());
        assert_eq!(map[0], 7);
        drop(registration);
        drop(map);
    }
}
