//! SAE folders with a chosen decoder, for tests of what is computed from decoder
//! directions: a SAELens folder (`cfg.json` + `sae_weights.safetensors`) whose `W_dec`
//! is given, recorded in a synthetic index's manifest as the index's SAE.

use std::{collections::HashMap, path::Path};

use rand::{RngExt, SeedableRng, rngs::StdRng};
use saeidx_format::manifest::{Manifest, SaeLocation};
use safetensors::{Dtype, tensor::TensorView};

use crate::synthetic::SyntheticError;

/// `d_sae` random directions of width `d_in` (standard normal entries, row-major).
pub fn random_decoder(d_sae: usize, d_in: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..d_sae * d_in).map(|_| normal(&mut rng)).collect()
}

/// A standard normal value (Box–Muller).
pub fn normal(rng: &mut StdRng) -> f32 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random_range(0.0..1.0);
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

/// Writes a SAELens TopK SAE folder `dir` whose decoder `W_dec` is `w_dec`
/// (`d_sae × d_in`, row-major); the encoder is its transpose, the biases zero.
pub fn write_saelens_sae(
    dir: &Path,
    w_dec: &[f32],
    d_sae: usize,
    d_in: usize,
) -> Result<(), SyntheticError> {
    if w_dec.len() != d_sae * d_in {
        return Err(SyntheticError::Spec(format!(
            "{} decoder values are not {d_sae} × {d_in}",
            w_dec.len()
        )));
    }
    std::fs::create_dir_all(dir)?;
    let mut w_enc = vec![0.0f32; w_dec.len()];
    for f in 0..d_sae {
        for i in 0..d_in {
            w_enc[i * d_sae + f] = w_dec[f * d_in + i];
        }
    }
    let bytes =
        |values: &[f32]| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
    let tensors = [
        ("W_dec", bytes(w_dec), vec![d_sae, d_in]),
        ("W_enc", bytes(&w_enc), vec![d_in, d_sae]),
        ("b_dec", bytes(&vec![0.0; d_in]), vec![d_in]),
        ("b_enc", bytes(&vec![0.0; d_sae]), vec![d_sae]),
    ];
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, data, shape)| {
            TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|view| (*name, view))
                .map_err(|e| SyntheticError::Spec(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let file = safetensors::serialize(views, None::<HashMap<String, String>>)
        .map_err(|e| SyntheticError::Spec(e.to_string()))?;
    std::fs::write(dir.join("sae_weights.safetensors"), file)?;
    let cfg = serde_json::json!({
        "architecture": "topk",
        "d_in": d_in,
        "d_sae": d_sae,
        "k": 4,
        "hook_name": "blocks.0.hook_resid_post",
        "model_name": "synthetic",
    });
    std::fs::write(dir.join("cfg.json"), cfg.to_string())?;
    Ok(())
}

/// Records the SAE folder `sae_dir` (with SHA-256 `sha256`, as `saeidx_sae` computes it)
/// as the SAE of the synthetic index in `index_dir`, relative to the index folder (the
/// synthetic model's width becomes `d_in`); call it before building the query files.
pub fn record_sae(
    index_dir: &Path,
    sae_dir: &Path,
    sha256: &str,
    d_in: usize,
) -> Result<Manifest, SyntheticError> {
    let mut manifest =
        Manifest::read(index_dir).map_err(|e| SyntheticError::Spec(e.to_string()))?;
    let relative = relative_path(index_dir, sae_dir)?;
    let sae = &mut manifest.job.sae;
    sae.source = relative;
    sae.location = Some(SaeLocation::Relative);
    sae.format = "saelens".into();
    sae.sha256 = sha256.to_string();
    sae.d_in = d_in;
    // The synthetic model's activations are as wide as the SAE reads.
    manifest.job.model.hidden_size = d_in;
    manifest.write(index_dir)?;
    Ok(manifest)
}

/// `to` relative to `from` (both absolute or both relative to one folder).
fn relative_path(from: &Path, to: &Path) -> Result<String, SyntheticError> {
    let from = std::fs::canonicalize(from)?;
    let to = std::fs::canonicalize(to)?;
    let common = from
        .components()
        .zip(to.components())
        .take_while(|(a, b)| a == b)
        .count();
    let ups = from.components().count() - common;
    let mut parts: Vec<String> = vec!["..".into(); ups];
    parts.extend(
        to.components()
            .skip(common)
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    Ok(parts.join("/"))
}
