//! Image bytes from a request: decode (with a small pixel cap, so the
//! fuzzer explores headers rather than huge allocations) and preprocess
//! with the tiny r-v1 processor, anyres and pad.
#![no_main]

use blip3_preprocess::{AspectMode, ImageProcessor, ProcessorConfig};
use libfuzzer_sys::fuzz_target;

fn processor() -> &'static ImageProcessor {
    static P: std::sync::OnceLock<ImageProcessor> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/blip3-tiny/model/preprocessor_config.json");
        let config = ProcessorConfig::from_file(&dir).expect("fixture config");
        ImageProcessor::new(&config)
            .expect("fixture processor")
            .with_pinpoints(vec![(42, 84), (84, 42), (84, 84)])
            .expect("pinpoints")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = blip3_preprocess::decode::decode_bytes(data, 1 << 16) {
        for aspect in [AspectMode::Anyres, AspectMode::Pad] {
            let prepared = processor().process(&image, aspect);
            assert_eq!(prepared.pixel_values.len(), prepared.num_crops * 3 * prepared.crop_size * prepared.crop_size);
        }
    }
});
