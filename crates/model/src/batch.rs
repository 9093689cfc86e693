//! Batches of token sequences of different lengths.
//!
//! Sequences are right-padded to the longest one. With causal attention a token only
//! attends to earlier positions of its own row, so real tokens never see padding and rows
//! never see each other; activations at padded positions are computed and dropped.

use mlx_rs::{Array, Dtype};

use crate::ModelError;

/// The id written at padded positions (never attended to, see the module docs).
const PAD_ID: u32 = 0;

/// Token sequences right-padded into one `[batch, longest]` array.
pub struct PaddedBatch {
    /// Token ids, `[batch, longest]` uint32.
    pub tokens: Array,
    /// Each row's real length.
    pub lengths: Vec<usize>,
}

impl PaddedBatch {
    /// Pads `sequences` (each non-empty) into one batch.
    pub fn new(sequences: &[&[u32]]) -> Result<Self, ModelError> {
        if sequences.is_empty() || sequences.iter().any(|s| s.is_empty()) {
            return Err(ModelError::Unsupported(
                "a batch needs at least one sequence and no empty sequence".into(),
            ));
        }
        let longest = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(sequences.len() * longest);
        for sequence in sequences {
            ids.extend_from_slice(sequence);
            ids.resize(ids.len() + longest - sequence.len(), PAD_ID);
        }
        Ok(Self {
            tokens: Array::from_slice(&ids, &[sequences.len() as i32, longest as i32]),
            lengths: sequences.iter().map(|s| s.len()).collect(),
        })
    }

    /// Splits `[batch, longest, width]` activations into each row's real tokens, as
    /// row-major `[length, width]` f32 values.
    pub fn unpad(&self, activations: &Array) -> Result<Vec<Vec<f32>>, ModelError> {
        let shape = activations.shape();
        let longest = self.tokens.shape()[1];
        if shape.len() != 3 || shape[0] as usize != self.lengths.len() || shape[1] != longest {
            return Err(ModelError::Unsupported(format!(
                "activations of shape {shape:?} do not belong to this batch"
            )));
        }
        let width = shape[2] as usize;
        let values = activations.as_dtype(Dtype::Float32)?.contiguous()?;
        let values = values
            .try_as_slice::<f32>()
            .map_err(|e| mlx_rs::error::Exception::custom(format!("reading activations: {e}")))?;
        let row = longest as usize * width;
        Ok(self
            .lengths
            .iter()
            .enumerate()
            .map(|(b, &length)| values[b * row..b * row + length * width].to_vec())
            .collect())
    }
}
