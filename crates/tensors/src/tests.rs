use std::collections::HashMap;

use saeidx_testkit::sae::{NpyLayout, write_gemma_scope_npz};
use safetensors::tensor::TensorView;

use super::*;

/// A 3 × 2 decoder with distinct values.
const W_DEC: [f32; 6] = [1.0, -2.0, 3.5, 0.25, -0.5, 6.0];

#[test]
fn npz_arrays_read_row_major_in_every_storage_layout() {
    let layouts = [
        NpyLayout::default(),
        NpyLayout {
            fortran: true,
            ..NpyLayout::default()
        },
        NpyLayout {
            f64: true,
            deflated: true,
            ..NpyLayout::default()
        },
        NpyLayout {
            fortran: true,
            f64: true,
            deflated: true,
        },
    ];
    for layout in layouts {
        let dir = tempfile::tempdir().unwrap();
        write_gemma_scope_npz(dir.path(), &W_DEC, 3, 2, layout).unwrap();
        let path = dir.path().join("params.npz");
        let w_dec = read_npz_array(&path, "w_dec").unwrap();
        assert_eq!(w_dec.shape, [3, 2], "{layout:?}");
        assert_eq!(w_dec.values, W_DEC, "{layout:?}");
        let all: HashMap<_, _> = read_npz(&path).unwrap().into_iter().collect();
        assert_eq!(all["w_dec"], w_dec, "{layout:?}");
        // w_enc is the decoder's transpose, stored in C order.
        assert_eq!(all["w_enc"].shape, [2, 3]);
        assert_eq!(all["w_enc"].values, [1.0, 3.5, -0.5, -2.0, 0.25, 6.0]);
        assert_eq!(all["threshold"].values, [0.5; 3]);
    }
}

#[test]
fn fortran_order_of_any_rank_is_reordered_row_major() {
    // A 2 × 3 × 2 array whose row-major values are 0..12, stored in Fortran order.
    let shape = [2, 3, 2];
    let mut fortran = vec![0.0; 12];
    for i in 0..2 {
        for j in 0..3 {
            for k in 0..2 {
                fortran[i + 2 * j + 6 * k] = (i * 6 + j * 2 + k) as f32;
            }
        }
    }
    let expected: Vec<f32> = (0..12).map(|v| v as f32).collect();
    assert_eq!(fortran_to_row_major(&fortran, &shape), expected);
    assert_eq!(fortran_to_row_major(&[4.0, 5.0], &[2]), [4.0, 5.0]);
}

#[test]
fn safetensors_floats_of_every_width_read_as_f32() {
    let f16: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = [0.5f32, 4.0]
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
        .collect();
    let f64: Vec<u8> = [0.125f64].iter().flat_map(|v| v.to_le_bytes()).collect();
    let f32: Vec<u8> = W_DEC.iter().flat_map(|v| v.to_le_bytes()).collect();
    let views = vec![
        ("a", TensorView::new(Dtype::F16, vec![2], &f16).unwrap()),
        (
            "b",
            TensorView::new(Dtype::BF16, vec![1, 2], &bf16).unwrap(),
        ),
        ("c", TensorView::new(Dtype::F64, vec![1], &f64).unwrap()),
        ("d", TensorView::new(Dtype::F32, vec![3, 2], &f32).unwrap()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    std::fs::write(
        &path,
        safetensors::serialize(views, None::<HashMap<String, String>>).unwrap(),
    )
    .unwrap();
    let all: HashMap<_, _> = read_safetensors(&path).unwrap().into_iter().collect();
    assert_eq!(all["a"].values, [1.5, -2.0]);
    assert_eq!(all["b"].values, [0.5, 4.0]);
    assert_eq!(all["b"].shape, [1, 2]);
    assert_eq!(all["c"].values, [0.125]);
    let d = read_safetensors_tensor(&path, "d").unwrap();
    assert_eq!(
        (d.values.as_slice(), d.shape.as_slice()),
        (&W_DEC[..], &[3, 2][..])
    );
}

#[test]
fn missing_tensors_and_foreign_files_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_gemma_scope_npz(dir.path(), &W_DEC, 3, 2, NpyLayout::default()).unwrap();
    let npz = dir.path().join("params.npz");
    let missing = read_npz_array(&npz, "W_dec").unwrap_err().to_string();
    assert!(missing.contains("params.npz") && missing.contains("has no array W_dec"));
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a tensor file at all").unwrap();
    let error = read_safetensors(&junk).unwrap_err().to_string();
    assert!(error.contains("not a safetensors file"), "{error}");
    let error = read_npz(&junk).unwrap_err().to_string();
    assert!(error.contains("not an .npz archive"), "{error}");
    let absent = read_npz(&dir.path().join("absent.npz")).unwrap_err();
    assert!(matches!(absent, TensorError::Io { .. }));
}

#[test]
fn the_content_hash_lists_each_file_with_its_digest_in_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), b"one").unwrap();
    std::fs::write(dir.path().join("b"), b"two").unwrap();
    let listing = format!(
        "a {}\nb {}\n",
        checksum::sha256_hex(b"one"),
        checksum::sha256_hex(b"two")
    );
    assert_eq!(
        files_sha256(dir.path(), &["a", "b"]).unwrap(),
        checksum::sha256_hex(listing.as_bytes())
    );
    assert_ne!(
        files_sha256(dir.path(), &["b", "a"]).unwrap(),
        files_sha256(dir.path(), &["a", "b"]).unwrap()
    );
}
