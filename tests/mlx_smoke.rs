//! MLX really computes here: ops through mlx-rs on the Linux CPU runtime, with OpenBLAS.

use mlx_rs::{Array, Dtype, ops};

#[test]
fn matmul_matches_known_result() {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = Array::from_slice(&[7.0f32, 8.0, 9.0, 10.0, 11.0, 12.0], &[3, 2]);
    let product = a.matmul(&b).unwrap();
    assert_eq!(product.shape(), &[2, 2]);
    assert_eq!(product.as_slice::<f32>(), &[58.0, 64.0, 139.0, 154.0]);
}

#[test]
fn large_matmul_matches_naive_product() {
    // Big enough that MLX hands it to BLAS.
    let (m, k, n) = (96usize, 80usize, 72usize);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0)
        .collect();
    let product = Array::from_slice(&a, &[m as i32, k as i32])
        .matmul(Array::from_slice(&b, &[k as i32, n as i32]))
        .unwrap();
    let got = product.as_slice::<f32>();
    for i in 0..m {
        for j in 0..n {
            let expected: f32 = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            assert!((got[i * n + j] - expected).abs() < 1e-3, "({i}, {j})");
        }
    }
}

#[test]
fn reductions() {
    let x = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    assert_eq!(x.sum(None).unwrap().item_exact::<f32>(), 21.0);
    assert_eq!(x.sum_axis(1, None).unwrap().as_slice::<f32>(), &[6.0, 15.0]);
    assert_eq!(
        x.max_axis(0, None).unwrap().as_slice::<f32>(),
        &[4.0, 5.0, 6.0]
    );
    let mean = x.mean(None).unwrap().item_exact::<f32>();
    assert!((mean - 3.5).abs() < 1e-6);
    assert_eq!(
        ops::indexing::argmax_axis(&x, 1, None)
            .unwrap()
            .as_slice::<u32>(),
        &[2, 2]
    );
}

#[test]
fn dtype_conversions_round_trip() {
    let values = [0.5f32, -1.25, 1024.0, 3.0e-3];
    let x = Array::from_slice(&values, &[4]);
    let half = x.as_dtype(Dtype::Float16).unwrap();
    assert_eq!(half.dtype(), Dtype::Float16);
    let back = half.as_dtype(Dtype::Float32).unwrap();
    for (got, want) in back.as_slice::<f32>().iter().zip(values) {
        assert!((got - want).abs() <= want.abs() * 1e-3, "{got} vs {want}");
    }
    let bf16 = x
        .as_dtype(Dtype::Bfloat16)
        .unwrap()
        .as_dtype(Dtype::Float32)
        .unwrap();
    assert_eq!(bf16.as_slice::<f32>()[..3], values[..3]);
    let ints = Array::from_slice(&[1.9f32, -2.5, 7.0], &[3])
        .as_dtype(Dtype::Int32)
        .unwrap();
    assert_eq!(ints.as_slice::<i32>(), &[1, -2, 7]);
}

#[test]
fn openblas_is_loaded_for_blas_calls() {
    // libmlx.so would otherwise bind to the wheel's ~30× slower reference BLAS.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(
        maps.contains("libopenblas"),
        "OpenBLAS is not mapped into the test process; mlx-link-args should link it"
    );
}
