//! Nearest decoder directions by cosine, without an n × n matrix.
//!
//! Queries and keys are unit rows, so cosines are dot products: blocks of
//! [`QUERY_BLOCK`] query rows are multiplied with blocks of [`KEY_BLOCK`] key rows
//! (`matrixmultiply`'s sgemm: packed, SIMD microkernels, no BLAS to link), and each
//! query row keeps a running top-k as the key blocks go by. Memory is one
//! `QUERY_BLOCK × KEY_BLOCK` product per thread (1 MiB) plus the answers; query
//! blocks run in parallel (rayon). The naive way, one dense `n × n` product, needs
//! 256 MiB at 8k features and 16 GiB at 65k.

use std::{cmp::Ordering, collections::BinaryHeap};

use rayon::prelude::*;
use saeidx_query::DecoderNeighbour;

use crate::Decoder;

/// Query rows per block.
pub const QUERY_BLOCK: usize = 256;
/// Key rows per block.
pub const KEY_BLOCK: usize = 1024;

/// An entry of a running top-k; the heap's top is the weakest (lowest cosine, then
/// highest feature id), so that it is the one replaced.
#[derive(Clone, Copy)]
struct Entry(DecoderNeighbour);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Greater = weaker.
        other
            .0
            .cosine
            .total_cmp(&self.0.cosine)
            .then(self.0.feature.cmp(&other.0.feature))
    }
}

/// The `k` best of the values pushed into it (highest cosine, then lowest feature id).
struct RunningTopK {
    k: usize,
    heap: BinaryHeap<Entry>,
}

impl RunningTopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    fn push(&mut self, feature: u32, cosine: f32) {
        let entry = Entry(DecoderNeighbour { feature, cosine });
        if self.heap.len() < self.k {
            self.heap.push(entry);
        } else if let Some(mut weakest) = self.heap.peek_mut()
            && entry < *weakest
        {
            *weakest = entry;
        }
    }

    /// The smallest cosine that can still enter (`-inf` until full).
    fn floor(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map_or(f32::NEG_INFINITY, |e| e.0.cosine)
        }
    }

    fn into_sorted(self) -> Vec<DecoderNeighbour> {
        // `into_sorted_vec` is ascending by `Ord`, i.e. strongest first.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|e| e.0)
            .collect()
    }
}

/// For each of `queries` (feature ids of `a`), the `k` features of `b` whose decoder
/// directions have the highest cosine with it, strongest first (ties: lower id first).
/// With `same` (`a` and `b` are one SAE) a feature is not its own neighbour.
pub fn nearest(
    a: &Decoder,
    queries: &[u32],
    b: &Decoder,
    k: usize,
    same: bool,
) -> Vec<Vec<DecoderNeighbour>> {
    let d = a.d_in();
    debug_assert_eq!(d, b.d_in());
    queries
        .par_chunks(QUERY_BLOCK)
        .flat_map_iter(|block| {
            let mut tops: Vec<RunningTopK> = block.iter().map(|_| RunningTopK::new(k)).collect();
            if k == 0 {
                return tops.into_iter().map(RunningTopK::into_sorted);
            }
            // The block's query rows, packed contiguously.
            let packed: Vec<f32> = block
                .iter()
                .flat_map(|&q| a.row(q as usize).iter().copied())
                .collect();
            let mut product = vec![0.0f32; block.len() * KEY_BLOCK];
            for start in (0..b.d_sae()).step_by(KEY_BLOCK) {
                let keys = KEY_BLOCK.min(b.d_sae() - start);
                multiply(
                    &packed,
                    block.len(),
                    &b.rows()[start * d..(start + keys) * d],
                    keys,
                    d,
                    &mut product,
                );
                for (i, top) in tops.iter_mut().enumerate() {
                    let row = &product[i * keys..(i + 1) * keys];
                    let mut floor = top.floor();
                    for (j, &cosine) in row.iter().enumerate() {
                        let feature = (start + j) as u32;
                        if cosine >= floor && !(same && feature == block[i]) {
                            top.push(feature, cosine);
                            floor = top.floor();
                        }
                    }
                }
            }
            tops.into_iter().map(RunningTopK::into_sorted)
        })
        .collect()
}

/// `out[m × n] = q[m × d] · keys[n × d]ᵀ` (all row-major).
fn multiply(q: &[f32], m: usize, keys: &[f32], n: usize, d: usize, out: &mut [f32]) {
    debug_assert!(q.len() == m * d && keys.len() == n * d && out.len() >= m * n);
    // SAFETY: `q` holds m × d values (row stride d), `keys` n × d values read as the
    // d × n matrix keysᵀ (row stride 1, column stride d), and `out` at least m × n
    // values written with row stride n: every index sgemm touches is inside the slices,
    // which do not overlap (`out` is borrowed mutably).
    unsafe {
        matrixmultiply::sgemm(
            m,
            d,
            n,
            1.0,
            q.as_ptr(),
            d as isize,
            1,
            keys.as_ptr(),
            1,
            d as isize,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}
