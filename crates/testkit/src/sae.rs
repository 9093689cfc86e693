//! SAE folders with a chosen decoder, for tests of what is computed from decoder
//! directions: a SAELens folder (`cfg.json` + `sae_weights.safetensors`) or a Gemma
//! Scope folder (`params.npz`) whose decoder is given, recorded in a synthetic index's
//! manifest as the index's SAE.

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

/// How [`write_gemma_scope_npz`] stores the decoder array `w_dec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NpyLayout {
    /// Fortran (column-major) order instead of C order.
    pub fortran: bool,
    /// `<f8` values instead of `<f4`.
    pub f64: bool,
    /// A deflated archive entry (`np.savez_compressed`) instead of a stored one.
    pub deflated: bool,
}

/// Writes a Gemma Scope JumpReLU SAE folder `dir` (`params.npz`, as `np.savez` writes
/// it) whose decoder `w_dec` is `w_dec` (`d_sae × d_in`, row-major), stored as `layout`
/// says; `w_enc` is its transpose, the biases zero, the thresholds 0.5.
pub fn write_gemma_scope_npz(
    dir: &Path,
    w_dec: &[f32],
    d_sae: usize,
    d_in: usize,
    layout: NpyLayout,
) -> Result<(), SyntheticError> {
    if w_dec.len() != d_sae * d_in {
        return Err(SyntheticError::Spec(format!(
            "{} decoder values are not {d_sae} × {d_in}",
            w_dec.len()
        )));
    }
    std::fs::create_dir_all(dir)?;
    let transposed = |values: &[f32], rows: usize, cols: usize| -> Vec<f32> {
        let mut out = vec![0.0; values.len()];
        for r in 0..rows {
            for c in 0..cols {
                out[c * rows + r] = values[r * cols + c];
            }
        }
        out
    };
    // Fortran order stores the transpose's C-order values.
    let stored = if layout.fortran {
        transposed(w_dec, d_sae, d_in)
    } else {
        w_dec.to_vec()
    };
    let w_enc = transposed(w_dec, d_sae, d_in);
    let arrays = [
        ("w_dec", npy(&stored, &[d_sae, d_in], layout)),
        ("w_enc", npy(&w_enc, &[d_in, d_sae], NpyLayout::default())),
        (
            "b_enc",
            npy(&vec![0.0; d_sae], &[d_sae], NpyLayout::default()),
        ),
        (
            "b_dec",
            npy(&vec![0.0; d_in], &[d_in], NpyLayout::default()),
        ),
        (
            "threshold",
            npy(&vec![0.5; d_sae], &[d_sae], NpyLayout::default()),
        ),
    ];
    let zip_error = |e: zip::result::ZipError| SyntheticError::Spec(e.to_string());
    let mut archive = zip::ZipWriter::new(std::fs::File::create(dir.join("params.npz"))?);
    let options = zip::write::SimpleFileOptions::default().compression_method(if layout.deflated {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    });
    for (name, bytes) in arrays {
        archive
            .start_file(format!("{name}.npy"), options)
            .map_err(zip_error)?;
        std::io::Write::write_all(&mut archive, &bytes)?;
    }
    archive.finish().map_err(zip_error)?;
    Ok(())
}

/// A NumPy `.npy` file (format 1.0) of `values` with `shape`.
fn npy(values: &[f32], shape: &[usize], layout: NpyLayout) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let descr = if layout.f64 { "<f8" } else { "<f4" };
    let fortran = if layout.fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header, padded with spaces to 64 bytes.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for value in values {
        if layout.f64 {
            out.extend(f64::from(*value).to_le_bytes());
        } else {
            out.extend(value.to_le_bytes());
        }
    }
    out
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
