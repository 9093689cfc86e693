//! Float tensors of SAE weight files, read as f32 values in row-major (C) order with
//! their shapes, whatever float type the file stores.
//!
//! Two readers need them: `saeidx-sae` (which turns them into MLX arrays to encode) and
//! `saeidx-compare` (which reads decoder rows without MLX). Both read the same files the
//! same way through this crate, and name an SAE's content with the same hash
//! ([`files_sha256`]).
//!
//! - safetensors ([`read_safetensors`], [`read_safetensors_tensor`]): F64, F32, F16 and
//!   BF16 tensors (MLX's own reader refuses F64, which SAELens uses for
//!   `topk_threshold`).
//! - NumPy `.npz` archives ([`read_npz`], [`read_npz_array`]): little-endian f16, f32 or
//!   f64 arrays in C or Fortran order (Gemma Scope's `params.npz`).

use std::io::Read;
use std::path::{Path, PathBuf};

use saeidx_format::checksum;
use safetensors::{Dtype, SafeTensors};

/// A float tensor: its values as f32 in row-major order, and its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatTensor {
    /// The values, row-major (the last axis varies fastest).
    pub values: Vec<f32>,
    /// The length of each axis.
    pub shape: Vec<usize>,
}

/// Why a weights file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not what it should be (not the format, a missing tensor, a non-float
    /// type); the message names the file and what is wrong.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl TensorError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn invalid(path: &Path, reason: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Every tensor of a safetensors file, by name, in the file's order.
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, FloatTensor)>, TensorError> {
    with_safetensors(path, |tensors| {
        tensors
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let tensor = float_tensor(path, &name, &view)?;
                Ok((name, tensor))
            })
            .collect()
    })
}

/// The tensor `name` of a safetensors file.
pub fn read_safetensors_tensor(path: &Path, name: &str) -> Result<FloatTensor, TensorError> {
    with_safetensors(path, |tensors| {
        let view = tensors
            .tensor(name)
            .map_err(|_| TensorError::invalid(path, format!("has no tensor {name}")))?;
        float_tensor(path, name, &view)
    })
}

/// Maps a safetensors file and hands its parsed header to `read`.
fn with_safetensors<T>(
    path: &Path,
    read: impl FnOnce(&SafeTensors<'_>) -> Result<T, TensorError>,
) -> Result<T, TensorError> {
    let file = std::fs::File::open(path).map_err(TensorError::io(path))?;
    // SAFETY: the map is only read, and only while this function runs; saeidx never
    // modifies weight files, and a concurrent writer could at worst yield garbage values
    // (data to the callers, never memory addresses) in the copies made here.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(TensorError::io(path))?;
    let tensors = SafeTensors::deserialize(&map)
        .map_err(|e| TensorError::invalid(path, format!("not a safetensors file: {e}")))?;
    read(&tensors)
}

/// One safetensors tensor's values as f32.
fn float_tensor(
    path: &Path,
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
) -> Result<FloatTensor, TensorError> {
    let bytes = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(TensorError::invalid(
                path,
                format!("tensor {name} has type {other:?}; SAE tensors are floating point"),
            ));
        }
    };
    Ok(FloatTensor {
        values,
        shape: view.shape().to_vec(),
    })
}

/// Every array of a NumPy `.npz` archive, by name (without `.npy`), in the archive's
/// order; entries that are not `.npy` files are skipped.
pub fn read_npz(path: &Path) -> Result<Vec<(String, FloatTensor)>, TensorError> {
    let mut archive = open_npz(path)?;
    let mut arrays = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| TensorError::invalid(path, format!("unreadable entry: {e}")))?;
        let entry_name = entry
            .name()
            .map_err(|e| TensorError::invalid(path, format!("unreadable entry name: {e}")))?
            .into_owned();
        if let Some(name) = entry_name.strip_suffix(".npy") {
            let tensor = read_npy(path, name, &mut entry)?;
            arrays.push((name.to_owned(), tensor));
        }
    }
    Ok(arrays)
}

/// The array `name` (without `.npy`) of a NumPy `.npz` archive.
pub fn read_npz_array(path: &Path, name: &str) -> Result<FloatTensor, TensorError> {
    let mut archive = open_npz(path)?;
    let mut entry = archive
        .by_name(&format!("{name}.npy"))
        .map_err(|_| TensorError::invalid(path, format!("has no array {name}")))?;
    read_npy(path, name, &mut entry)
}

/// Opens a `.npz` file as a zip archive.
fn open_npz(path: &Path) -> Result<zip::ZipArchive<std::fs::File>, TensorError> {
    let file = std::fs::File::open(path).map_err(TensorError::io(path))?;
    zip::ZipArchive::new(file)
        .map_err(|e| TensorError::invalid(path, format!("not an .npz archive: {e}")))
}

/// Reads one `.npy` entry of the archive at `path` into row-major f32 values.
fn read_npy(path: &Path, name: &str, entry: &mut impl Read) -> Result<FloatTensor, TensorError> {
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .map_err(TensorError::io(path))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| TensorError::invalid(path, format!("{name}.npy is not a NumPy array: {e}")))?;
    let fortran = npy.order() == npyz::Order::Fortran;
    let shape = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TensorError::invalid(path, format!("{name}.npy: shape too large")))?;
    let values = npy_f32(npy)
        .map_err(|reason| TensorError::invalid(path, format!("{name}.npy: {reason}")))?;
    if values.len() != shape.iter().product::<usize>() {
        return Err(TensorError::invalid(
            path,
            format!(
                "{name}.npy holds {} values for shape {shape:?}",
                values.len()
            ),
        ));
    }
    let values = if fortran {
        fortran_to_row_major(&values, &shape)
    } else {
        values
    };
    Ok(FloatTensor { values, shape })
}

/// The values of a little-endian float NumPy array, as f32.
fn npy_f32(npy: npyz::NpyFile<&[u8]>) -> Result<Vec<f32>, String> {
    let dtype = npy.dtype();
    let npyz::DType::Plain(kind) = &dtype else {
        return Err(format!("dtype {dtype:?} is not a plain float"));
    };
    let read_error = |e: std::io::Error| e.to_string();
    match (kind.type_char(), kind.size_field()) {
        (npyz::TypeChar::Float, 4) => npy.into_vec::<f32>().map_err(read_error),
        (npyz::TypeChar::Float, 8) => Ok(npy
            .into_vec::<f64>()
            .map_err(read_error)?
            .into_iter()
            .map(|v| v as f32)
            .collect()),
        (npyz::TypeChar::Float, 2) => Ok(npy
            .into_vec::<half::f16>()
            .map_err(read_error)?
            .into_iter()
            .map(f32::from)
            .collect()),
        _ => Err(format!(
            "dtype {kind} is not a float; SAE tensors are floating point"
        )),
    }
}

/// Values stored in Fortran order (the first axis varies fastest) reordered row-major.
fn fortran_to_row_major(values: &[f32], shape: &[usize]) -> Vec<f32> {
    // Fortran strides: axis k steps over the product of the axes before it.
    let mut strides = vec![1usize; shape.len()];
    for axis in 1..shape.len() {
        strides[axis] = strides[axis - 1] * shape[axis - 1];
    }
    let mut index = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(values.len());
    for _ in 0..values.len() {
        let offset: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(values[offset]);
        // The next row-major index: the last axis varies fastest.
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// SHA-256 over `"{name} {sha256}\n"` lines of the given files of `dir`, in the given
/// order: how saeidx names an SAE's content in an index manifest.
pub fn files_sha256(dir: &Path, files: &[&str]) -> Result<String, TensorError> {
    let mut listing = String::new();
    for file in files {
        let path = dir.join(file);
        let digest = checksum::sha256_file(&path).map_err(TensorError::io(&path))?;
        listing.push_str(&format!("{file} {digest}\n"));
    }
    Ok(checksum::sha256_hex(listing.as_bytes()))
}

#[cfg(test)]
mod tests;
