use mlx_rs::Array;
#[test]
fn matmul() {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    let b = Array::from_slice(&[5.0f32, 6.0, 7.0, 8.0], &[2, 2]);
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.as_slice::<f32>(), &[19.0, 22.0, 43.0, 50.0]);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(maps.contains("libopenblas"), "{maps}");
}
