//! Image decoding to 8-bit RGB with a decompression-bomb guard.

use std::io::Cursor;
use std::path::Path;

use image::{ImageReader, Limits};

use crate::{PreprocessError, RgbImage};

/// Default pixel limit: Pillow's `MAX_IMAGE_PIXELS` (89,478,485) rounded, the
/// size above which Pillow itself starts warning about decompression bombs.
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;

/// Reads and decodes an image file; see [`decode_bytes`].
pub fn load_path(path: &Path, max_pixels: u64) -> Result<RgbImage, PreprocessError> {
    let bytes = std::fs::read(path).map_err(|source| PreprocessError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_bytes(&bytes, max_pixels)
}

/// Decodes PNG/JPEG/WebP/GIF/BMP bytes to RGB8, as Pillow's `convert("RGB")`:
/// alpha is dropped (not composited), grey is replicated, palettes expanded.
/// The size is checked from the header before any pixel is decoded.
pub fn decode_bytes(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, PreprocessError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| PreprocessError::Corrupt(e.to_string()))?;
    let format = reader.format().ok_or_else(|| {
        PreprocessError::UnknownFormat(format!(
            "unrecognised header {:02x?}",
            &bytes[..bytes.len().min(8)]
        ))
    })?;
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| PreprocessError::Corrupt(e.to_string()))?;
    check_size(width, height, max_pixels)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    // Room for the decoded image at up to 16 bits × 4 channels, plus slack.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(1 << 26));
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| match e {
        image::ImageError::Unsupported(u) => PreprocessError::UnknownFormat(u.to_string()),
        other => PreprocessError::Corrupt(other.to_string()),
    })?;
    Ok(to_rgb8_like_pillow(decoded))
}

/// `convert("RGB")` as Pillow does it. 16-bit colour images keep the high byte
/// of each sample (Pillow unpacks 16-bit PNG colour data that way), where the
/// `image` crate would round; every other layout uses the crate's conversion,
/// which matches Pillow (alpha dropped, grey replicated, palette expanded).
fn to_rgb8_like_pillow(decoded: image::DynamicImage) -> RgbImage {
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    let high_bytes = |samples: &[u16], channels: usize| -> Vec<u8> {
        samples
            .chunks_exact(channels)
            .flat_map(|px| [(px[0] >> 8) as u8, (px[1] >> 8) as u8, (px[2] >> 8) as u8])
            .collect()
    };
    match decoded {
        image::DynamicImage::ImageRgb16(img) => {
            RgbImage::from_raw(w, h, high_bytes(img.as_raw(), 3))
        }
        image::DynamicImage::ImageRgba16(img) => {
            RgbImage::from_raw(w, h, high_bytes(img.as_raw(), 4))
        }
        other => RgbImage::from_raw(w, h, other.to_rgb8().into_raw()),
    }
}

/// Rejects empty images and images above `max_pixels`.
pub fn check_size(width: u32, height: u32, max_pixels: u64) -> Result<(), PreprocessError> {
    if width == 0 || height == 0 {
        return Err(PreprocessError::Empty { width, height });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(PreprocessError::TooLarge {
            width,
            height,
            pixels,
            limit: max_pixels,
        });
    }
    Ok(())
}
