//! Decoding to RGB matches Pillow 13's `Image.open(f).convert("RGB")` for the
//! layouts in `testdata/decode` (written by `tools/gen_decode_cases.py`).

use std::path::PathBuf;

use blip3_preprocess::decode::decode_bytes;
use safetensors::SafeTensors;

#[test]
fn rgb_conversion_matches_pillow() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/decode");
    let expected = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let expected = SafeTensors::deserialize(&expected).unwrap();
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for name in expected.names() {
        let want = expected.tensor(name).unwrap();
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let got = decode_bytes(&bytes, u64::MAX).unwrap();
        assert_eq!([got.height(), got.width(), 3], want.shape(), "{name}");
        let diff = got
            .as_raw()
            .iter()
            .zip(want.data())
            .filter(|(a, b)| a != b)
            .count();
        if diff > 0 {
            failures.push(format!("{name}: {diff} bytes differ"));
        }
        checked.push(name.to_string());
    }
    assert_eq!(checked.len(), 9);
    assert!(failures.is_empty(), "{failures:?}");
}
