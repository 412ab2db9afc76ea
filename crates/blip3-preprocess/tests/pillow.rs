//! The resampler against Pillow 13's `Image.resize` (BICUBIC) on reference images
//! (`testdata/pillow-resize`, written by `tools/gen_pillow_resize.py`).

use std::path::PathBuf;

use blip3_preprocess::resize::resize_bicubic;
use blip3_preprocess::RgbImage;
use safetensors::SafeTensors;

#[test]
fn resize_matches_pillow_bit_for_bit() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/pillow-resize/cases.safetensors");
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut k = 0;
    while let (Ok(src), Ok(dst)) = (
        st.tensor(&format!("src_{k}")),
        st.tensor(&format!("dst_{k}")),
    ) {
        let src = RgbImage::from_raw(src.shape()[1], src.shape()[0], src.data().to_vec());
        let (h, w) = (dst.shape()[0], dst.shape()[1]);
        let got = resize_bicubic(&src, w, h);
        let diff = got
            .as_raw()
            .iter()
            .zip(dst.data())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            diff,
            0,
            "case {k}: {}x{} -> {w}x{h} differs from Pillow in {diff} bytes",
            src.width(),
            src.height()
        );
        k += 1;
    }
    assert_eq!(k, 13, "all reference cases were checked");
}
