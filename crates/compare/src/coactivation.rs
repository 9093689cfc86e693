//! Co-activation of two indexes' features over the tokens they share, from their sparse
//! codes: never a dense feature × feature matrix.
//!
//! Two indexes share tokens when they hold the same live documents (ids and texts, in
//! order) cut into the same tokens by the same tokenizer, as two SAEs run over one corpus
//! do; either may be an index of segments (its live documents, whatever their numbers). Then for
//! features `a` of A and `b` of B, over the `n` counted tokens, with `x`, `y` their
//! activations (0 where inactive):
//!
//! - Pearson's r = (n·Σxy − Σx·Σy) / √((n·Σx² − (Σx)²)(n·Σy² − (Σy)²));
//! - Jaccard = |tokens of a ∩ tokens of b| / |tokens of a ∪ tokens of b|.
//!
//! Σxy and the intersection are non-zero only for pairs active on one token, so a scan
//! over the tokens' codes visits exactly those pairs. A's features are taken in batches
//! (in parallel), each batch keeping only its own pairs: memory is the batch's distinct
//! pairs, not `d_sae_a × d_sae_b`.

use std::collections::HashMap;

use rayon::prelude::*;
use saeidx_query::{AnyIndex, Exclusions, TokenCodes};

use crate::CompareError;

/// A feature's sums over the counted tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Tokens it is active on.
    pub count: u64,
    /// Σ activation.
    pub sum: f64,
    /// Σ activation².
    pub sum_squares: f64,
}

/// What two features have in common on the shared tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pair {
    /// Tokens where both are active.
    pub together: u64,
    /// Σ of the products of their activations.
    pub products: f64,
}

/// Pearson's r of two features over `n` tokens (`None` when either is constant there,
/// e.g. never active).
pub fn pearson(n: u64, a: &Totals, b: &Totals, pair: &Pair) -> Option<f64> {
    let n = n as f64;
    let var_a = n * a.sum_squares - a.sum * a.sum;
    let var_b = n * b.sum_squares - b.sum * b.sum;
    if var_a <= 0.0 || var_b <= 0.0 {
        return None;
    }
    let r = (n * pair.products - a.sum * b.sum) / (var_a * var_b).sqrt();
    Some(r.clamp(-1.0, 1.0))
}

/// Jaccard similarity of two features' token sets (0 when both are empty).
pub fn jaccard(a: &Totals, b: &Totals, pair: &Pair) -> f64 {
    let union = a.count + b.count - pair.together;
    if union == 0 {
        0.0
    } else {
        pair.together as f64 / union as f64
    }
}

/// Two indexes over the same tokens, read together document by document.
pub struct SharedTokens<'a> {
    a: &'a AnyIndex,
    b: &'a AnyIndex,
    /// The live documents of A and B, paired in order.
    docs: Vec<(u32, u32)>,
    exclusions: Exclusions,
    /// Counted tokens.
    pub tokens: u64,
}

impl<'a> SharedTokens<'a> {
    /// `Ok(None)` when the indexes do not hold the same documents cut into the same
    /// tokens (then nothing is compared token by token); the reason is the error of
    /// [`Self::reason`].
    pub fn new(
        a: &'a AnyIndex,
        b: &'a AnyIndex,
        exclusions: Exclusions,
    ) -> Result<Result<Self, String>, CompareError> {
        let docs = match Self::paired(a, b)? {
            Ok(docs) => docs,
            Err(reason) => return Ok(Err(reason)),
        };
        let shared = Self {
            a,
            b,
            docs,
            exclusions,
            tokens: 0,
        };
        let mut tokens = 0u64;
        shared.scan(|_, codes| {
            tokens += codes.len() as u64;
            Ok(())
        })?;
        Ok(Ok(Self { tokens, ..shared }))
    }

    /// The live documents of `a` and `b` paired in order, or why they do not share
    /// tokens.
    fn paired(a: &AnyIndex, b: &AnyIndex) -> Result<Result<Vec<(u32, u32)>, String>, CompareError> {
        if a.job().tokenizer.sha256 != b.job().tokenizer.sha256 {
            return Ok(Err("their tokenizers differ".into()));
        }
        let (docs_a, docs_b) = (a.live_documents(), b.live_documents());
        if docs_a.len() != docs_b.len() {
            return Ok(Err(format!(
                "they hold {} and {} documents",
                docs_a.len(),
                docs_b.len()
            )));
        }
        for (&doc_a, &doc_b) in docs_a.iter().zip(&docs_b) {
            let (id_a, _, text_a) = a.document(doc_a)?;
            let (id_b, _, text_b) = b.document(doc_b)?;
            if id_a != id_b || text_a != text_b {
                return Ok(Err(format!(
                    "document {doc_a} differs ({id_a:?} and {id_b:?})"
                )));
            }
        }
        Ok(Ok(docs_a.into_iter().zip(docs_b).collect()))
    }

    /// Calls `visit(doc, tokens)` for every live document (A's number) with its counted
    /// tokens' codes in both indexes, position by position.
    fn scan(
        &self,
        mut visit: impl FnMut(u32, &[(TokenCodes<'_>, TokenCodes<'_>)]) -> Result<(), CompareError>,
    ) -> Result<(), CompareError> {
        for &(doc, doc_b) in &self.docs {
            let codes_a = self.a.document_codes(doc, self.exclusions)?;
            let codes_b = self.b.document_codes(doc_b, self.exclusions)?;
            if codes_a.len() != codes_b.len()
                || codes_a
                    .iter()
                    .zip(codes_b.iter())
                    .any(|(x, y)| x.position != y.position)
            {
                return Err(CompareError::NotSameTokens(format!(
                    "document {doc} is cut into different tokens in the two indexes"
                )));
            }
            let pairs: Vec<_> = codes_a.iter().zip(codes_b.iter()).collect();
            visit(doc, &pairs)?;
        }
        Ok(())
    }

    /// Each feature's [`Totals`] in A and in B.
    pub fn totals(&self) -> Result<(Vec<Totals>, Vec<Totals>), CompareError> {
        let mut a = vec![Totals::default(); self.a.d_sae()];
        let mut b = vec![Totals::default(); self.b.d_sae()];
        self.scan(|_, tokens| {
            for (x, y) in tokens {
                add(&mut a, x);
                add(&mut b, y);
            }
            Ok(())
        })?;
        Ok((a, b))
    }

    /// For A's features `batch`, every B feature active on a token with it: the pairs
    /// of each, indexed by feature − `batch.start`.
    pub fn pairs(
        &self,
        batch: std::ops::Range<u32>,
    ) -> Result<Vec<HashMap<u32, Pair>>, CompareError> {
        let mut out = vec![HashMap::new(); batch.len()];
        self.scan(|_, tokens| {
            for (x, y) in tokens {
                for (&fa, &va) in x.features.iter().zip(x.values) {
                    if !batch.contains(&fa) {
                        continue;
                    }
                    let row: &mut HashMap<u32, Pair> = &mut out[(fa - batch.start) as usize];
                    for (&fb, &vb) in y.features.iter().zip(y.values) {
                        let pair = row.entry(fb).or_default();
                        pair.together += 1;
                        pair.products += f64::from(va) * f64::from(vb);
                    }
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// For each `(a, group)`: the tokens where some feature of B's `group` is active,
    /// and of those, the tokens where `a` is active too.
    pub fn unions(&self, groups: &[(u32, Vec<u32>)]) -> Result<Vec<(u64, u64)>, CompareError> {
        let mut member_of: HashMap<u32, Vec<usize>> = HashMap::new();
        for (g, (_, members)) in groups.iter().enumerate() {
            for &b in members {
                member_of.entry(b).or_default().push(g);
            }
        }
        let mut out = vec![(0u64, 0u64); groups.len()];
        let mut hit = Vec::new();
        self.scan(|_, tokens| {
            for (x, y) in tokens {
                hit.clear();
                for fb in y.features {
                    if let Some(gs) = member_of.get(fb) {
                        hit.extend_from_slice(gs);
                    }
                }
                hit.sort_unstable();
                hit.dedup();
                for &g in &hit {
                    out[g].0 += 1;
                    if x.features.contains(&groups[g].0) {
                        out[g].1 += 1;
                    }
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Self::pairs`] for all of A's features in batches (in parallel), each batch's
    /// pairs handed to `finish` and dropped, so that memory stays one batch's per thread.
    pub fn for_each_batch<T: Send>(
        &self,
        finish: impl Fn(std::ops::Range<u32>, Vec<HashMap<u32, Pair>>) -> Result<Vec<T>, CompareError>
        + Sync,
    ) -> Result<Vec<T>, CompareError>
    where
        Self: Sync,
    {
        let d_sae = self.a.d_sae() as u32;
        let batch = (d_sae.div_ceil(64)).clamp(64, 1024);
        let starts: Vec<u32> = (0..d_sae).step_by(batch as usize).collect();
        let parts = starts
            .into_par_iter()
            .map(|start| {
                let range = start..(start + batch).min(d_sae);
                let pairs = self.pairs(range.clone())?;
                finish(range, pairs)
            })
            .collect::<Result<Vec<Vec<T>>, CompareError>>()?;
        Ok(parts.into_iter().flatten().collect())
    }
}

fn add(totals: &mut [Totals], codes: &TokenCodes<'_>) {
    for (&f, &v) in codes.features.iter().zip(codes.values) {
        if let Some(t) = totals.get_mut(f as usize) {
            t.count += 1;
            t.sum += f64::from(v);
            t.sum_squares += f64::from(v) * f64::from(v);
        }
    }
}
