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
    // The message names no byte of the data: the server passes it to
    // clients, and echoing a fetched file's first bytes would read it back.
    let format = reader.format().ok_or_else(|| {
        PreprocessError::UnknownFormat(
            "the data is not a PNG, JPEG, WebP, GIF or BMP image".to_string(),
        )
    })?;
    if format == image::ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(PreprocessError::Corrupt(
            "image file is truncated (the JPEG data ends before its end-of-image marker)".into(),
        ));
    }
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

/// Whether JPEG data holds an end-of-image marker (FF D9) after its last
/// start-of-scan (FF DA). The `image` crate decodes a cut-off file without
/// complaint (the missing rows come out grey); Pillow refuses it ("image file
/// is truncated"), and so do we. Neither marker can occur inside
/// entropy-coded data, where every FF byte is followed by 00.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some(scan) = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
        });
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
            .unwrap();
        out
    }

    #[test]
    fn truncated_jpegs_are_refused_like_pillow() {
        let whole = jpeg(64, 48);
        assert!(decode_bytes(&whole, DEFAULT_MAX_PIXELS).is_ok());
        // Trailing bytes after the end marker are fine, as in Pillow.
        let mut trailing = whole.clone();
        trailing.extend_from_slice(b"junk");
        assert!(decode_bytes(&trailing, DEFAULT_MAX_PIXELS).is_ok());
        for cut in [whole.len() - 2, whole.len() * 2 / 3, whole.len() / 2] {
            let err = decode_bytes(&whole[..cut], DEFAULT_MAX_PIXELS).unwrap_err();
            assert!(err.to_string().contains("truncated"), "{cut}: {err}");
        }
    }

    #[test]
    fn unknown_data_is_not_echoed() {
        let err = decode_bytes(b"SECRET!!-and-more", DEFAULT_MAX_PIXELS).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("53") && !text.contains("SECRET"), "{text}");
    }
}
