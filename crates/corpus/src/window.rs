//! Splitting tokenized documents into the windows the model sees.
//!
//! The rule (recorded in every index's manifest):
//!
//! - A document of at most `length` tokens is one window, seen whole.
//! - A longer document is cut into windows of `length` tokens that start every
//!   `length − overlap` tokens; the last window ends at the document's end (and may be
//!   shorter). Every window is a fresh sequence for the model, starting at position 0.
//! - Each token's activations are taken from exactly one window: the first window keeps
//!   all its tokens; later windows keep their tokens after the first `overlap`, which
//!   serve only as left context. So every kept token past the start of the document has
//!   at least `overlap` tokens of context, and no token is counted twice.
//!
//! The first position of every window acts as an attention sink (its residual norm is
//! ~100× the others on SmolLM2): with `overlap > 0` it is never kept except at a
//! document's start, where it is the document's own first token.

use std::ops::Range;

/// Window length and overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowPolicy {
    /// Tokens per window (at most the model's context length).
    pub length: usize,
    /// Tokens at the start of each later window used only as context.
    pub overlap: usize,
}

/// A window's place in its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The document's tokens the window holds (positions in the document).
    pub tokens: Range<usize>,
    /// The positions whose activations are kept from this window.
    pub kept: Range<usize>,
}

impl Window {
    /// Index within the window of the first kept token.
    pub fn first_kept(&self) -> usize {
        self.kept.start - self.tokens.start
    }
}

/// Why a window policy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Zero-length windows, or an overlap that leaves no new tokens per window.
    #[error(
        "window length {length} with overlap {overlap}: the overlap must be smaller than the length, and the length positive"
    )]
    Invalid {
        /// Tokens per window.
        length: usize,
        /// Overlap.
        overlap: usize,
    },
}

impl WindowPolicy {
    /// Positions of a document of `tokens` tokens whose activations come from the first
    /// position of a model window (attention sinks): the document's first token, and
    /// with no overlap every window start.
    pub fn sink_positions(self, tokens: usize) -> Vec<usize> {
        self.windows(tokens)
            .iter()
            .filter(|w| w.kept.start == w.tokens.start)
            .map(|w| w.tokens.start)
            .collect()
    }

    /// A checked policy.
    pub fn new(length: usize, overlap: usize) -> Result<Self, WindowError> {
        if length == 0 || overlap >= length {
            return Err(WindowError::Invalid { length, overlap });
        }
        Ok(Self { length, overlap })
    }

    /// The windows of a document of `tokens` tokens (none for an empty document).
    pub fn windows(&self, tokens: usize) -> Vec<Window> {
        let stride = self.length - self.overlap;
        let mut windows = Vec::new();
        let mut start = 0;
        while start < tokens {
            let end = (start + self.length).min(tokens);
            let kept_from = if start == 0 { 0 } else { start + self.overlap };
            windows.push(Window {
                tokens: start..end,
                kept: kept_from..end,
            });
            if end == tokens {
                break;
            }
            start += stride;
        }
        windows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_documents_are_one_window() {
        let policy = WindowPolicy::new(8, 2).unwrap();
        assert_eq!(policy.windows(0), []);
        assert_eq!(
            policy.windows(8),
            [Window {
                tokens: 0..8,
                kept: 0..8
            }]
        );
    }

    #[test]
    fn long_documents_overlap_and_keep_each_token_once() {
        let policy = WindowPolicy::new(8, 3).unwrap();
        let windows = policy.windows(20);
        assert_eq!(
            windows,
            [
                Window {
                    tokens: 0..8,
                    kept: 0..8
                },
                Window {
                    tokens: 5..13,
                    kept: 8..13
                },
                Window {
                    tokens: 10..18,
                    kept: 13..18
                },
                Window {
                    tokens: 15..20,
                    kept: 18..20
                },
            ]
        );
        assert_eq!(windows[1].first_kept(), 3);
        for n in 1..60 {
            for (length, overlap) in [(8, 0), (8, 3), (8, 7), (1, 0), (5, 4)] {
                let windows = WindowPolicy::new(length, overlap).unwrap().windows(n);
                let kept: Vec<usize> = windows.iter().flat_map(|w| w.kept.clone()).collect();
                assert_eq!(
                    kept,
                    (0..n).collect::<Vec<_>>(),
                    "n {n}, {length}/{overlap}"
                );
                for window in &windows {
                    assert!(window.tokens.len() <= length);
                    assert!(window.kept.start >= window.tokens.start);
                    assert_eq!(window.kept.end, window.tokens.end);
                    if window.tokens.start > 0 {
                        assert_eq!(window.first_kept(), overlap);
                    }
                }
            }
        }
    }

    #[test]
    fn overlap_must_leave_room() {
        assert!(WindowPolicy::new(4, 4).is_err());
        assert!(WindowPolicy::new(0, 0).is_err());
    }
}
