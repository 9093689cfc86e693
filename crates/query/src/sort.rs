//! The external sort behind the build's postings: nonzero activations arrive in token
//! order and leave grouped by feature, then token, within a memory budget. Records are
//! collected up to the budget, sorted and spilled as a run file to a work folder; the
//! runs are then merged k ways. With everything in one run nothing is spilled.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    fs::File,
    io::{BufReader, BufWriter, Read, Write},
    path::{Path, PathBuf},
};

use crate::error::QueryError;

/// One nonzero activation: the sort key (feature, token) and its payload (the value
/// code and the token's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Posting {
    /// The feature.
    pub(crate) feature: u32,
    /// The global token.
    pub(crate) token: u64,
    /// The value code (low 19 bits) and the token's flags (above).
    pub(crate) payload: u32,
}

/// Bytes of a posting in a run file.
const RECORD_BYTES: usize = 16;
/// Smallest number of records a run holds, whatever the budget.
const MIN_RUN: usize = 1024;

impl Posting {
    fn to_bytes(self) -> [u8; RECORD_BYTES] {
        let mut bytes = [0u8; RECORD_BYTES];
        bytes[..4].copy_from_slice(&self.feature.to_le_bytes());
        bytes[4..12].copy_from_slice(&self.token.to_le_bytes());
        bytes[12..].copy_from_slice(&self.payload.to_le_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8; RECORD_BYTES]) -> Self {
        let word = |range: std::ops::Range<usize>| {
            let mut out = [0u8; 8];
            out[..range.len()].copy_from_slice(&bytes[range]);
            u64::from_le_bytes(out)
        };
        Self {
            feature: word(0..4) as u32,
            token: word(4..12),
            payload: word(12..16) as u32,
        }
    }
}

/// Collects postings, spilling sorted runs to `dir` past the budget.
pub(crate) struct Sorter {
    dir: PathBuf,
    capacity: usize,
    run: Vec<Posting>,
    runs: Vec<PathBuf>,
}

impl Sorter {
    /// A sorter holding at most about `memory` bytes of postings, spilling to `dir`.
    pub(crate) fn new(dir: &Path, memory: u64) -> Self {
        let capacity = ((memory / size_of::<Posting>() as u64) as usize).max(MIN_RUN);
        Self {
            dir: dir.to_path_buf(),
            capacity,
            run: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Adds a posting.
    pub(crate) fn push(&mut self, posting: Posting) -> Result<(), QueryError> {
        if self.run.len() == self.capacity {
            self.spill()?;
        }
        if self.run.len() == self.run.capacity() {
            // Grow by doubling, but never past the budget.
            let more = self
                .run
                .len()
                .max(1 << 16)
                .min(self.capacity - self.run.len());
            self.run.reserve_exact(more);
        }
        self.run.push(posting);
        Ok(())
    }

    /// Runs spilled so far.
    pub(crate) fn spilled(&self) -> usize {
        self.runs.len()
    }

    fn spill(&mut self) -> Result<(), QueryError> {
        std::fs::create_dir_all(&self.dir).map_err(QueryError::io(&self.dir))?;
        let path = self.dir.join(format!("run-{:05}.bin", self.runs.len()));
        self.run.sort_unstable();
        let io = QueryError::io(&path);
        let file = File::create(&path).map_err(QueryError::io(&path))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let written = self
            .run
            .iter()
            .try_for_each(|posting| out.write_all(&posting.to_bytes()))
            .and_then(|()| out.flush());
        written.map_err(io)?;
        self.run.clear();
        self.runs.push(path);
        Ok(())
    }

    /// Calls `each` with every posting in (feature, token) order, then removes the runs.
    pub(crate) fn drain(
        mut self,
        mut each: impl FnMut(Posting) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        if self.runs.is_empty() {
            self.run.sort_unstable();
            return self.run.drain(..).try_for_each(each);
        }
        if !self.run.is_empty() {
            self.spill()?;
        }
        self.run = Vec::new();
        let mut readers = Vec::with_capacity(self.runs.len());
        let buffer = (64usize << 20) / self.runs.len().max(1);
        for path in &self.runs {
            let file = File::open(path).map_err(QueryError::io(path))?;
            readers.push(BufReader::with_capacity(
                buffer.clamp(1 << 12, 1 << 20),
                file,
            ));
        }
        let mut heap = BinaryHeap::with_capacity(readers.len());
        for (i, reader) in readers.iter_mut().enumerate() {
            if let Some(posting) = next(reader, &self.runs[i])? {
                heap.push(Reverse((posting, i)));
            }
        }
        while let Some(Reverse((posting, i))) = heap.pop() {
            each(posting)?;
            if let Some(next) = next(&mut readers[i], &self.runs[i])? {
                heap.push(Reverse((next, i)));
            }
        }
        for path in &self.runs {
            std::fs::remove_file(path).map_err(QueryError::io(path))?;
        }
        Ok(())
    }
}

/// The next posting of a run file, or `None` at its end.
fn next(reader: &mut impl Read, path: &Path) -> Result<Option<Posting>, QueryError> {
    let mut bytes = [0u8; RECORD_BYTES];
    match reader.read_exact(&mut bytes) {
        Ok(()) => Ok(Some(Posting::from_bytes(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(QueryError::io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spilled_runs_merge_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = Sorter::new(dir.path(), 0);
        let mut expected = Vec::new();
        for i in 0..5000u64 {
            let posting = Posting {
                feature: ((i * 7919) % 13) as u32,
                token: i,
                payload: (i % 17) as u32,
            };
            expected.push(posting);
            sorter.push(posting).unwrap();
        }
        assert_eq!(sorter.spilled(), 4);
        expected.sort_unstable();
        let mut seen = Vec::new();
        sorter
            .drain(|posting| {
                seen.push(posting);
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, expected);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
