//! Which query files a question read: question tickets.
//!
//! Every thread holds a ticket, a number from one counter that only grows; every read
//! of a query file ([`crate::mapped::MappedFile::ensure_bytes`], which every read goes
//! through to verify its chunks) records the reading thread's ticket in the file when
//! it is newer than the one recorded. After an answer, an index of segments checks
//! the files read under its thread's ticket or a newer one (each one `fstat`), then
//! takes a new ticket ([`finish`]): a file it read holds a ticket at least its own, so
//! none is left unchecked, while the files no question read since the last check
//! (most of them, over many segments) cost nothing. A file read under a newer ticket by
//! another thread is checked too, which is only more than needed; after a check that
//! fails the thread keeps its ticket, so its next answer checks those files again and
//! is refused too. Reads must happen on
//! the thread that checks (nothing in this crate reads on other threads).

use std::{
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering},
};

/// The next ticket handed out (0 means "none yet").
static NEXT: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's ticket (0 until its first read).
    static TICKET: Cell<u64> = const { Cell::new(0) };
}

/// This thread's ticket (a new one on its first call).
pub(crate) fn ticket() -> u64 {
    TICKET.with(|ticket| {
        if ticket.get() == 0 {
            ticket.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        ticket.get()
    })
}

/// Gives this thread a new ticket, newer than every ticket handed out so far: files it
/// reads from now on are told apart from those it read before (already checked).
pub(crate) fn finish() {
    TICKET.with(|ticket| ticket.set(NEXT.fetch_add(1, Ordering::Relaxed)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_ticket_is_newer_than_every_earlier_one() {
        let first = ticket();
        assert_eq!(ticket(), first);
        let other = std::thread::spawn(ticket).join().unwrap();
        finish();
        let second = ticket();
        assert!(second > first && second > other, "{first} {other} {second}");
    }
}
