//! Python image arguments: paths, encoded bytes, PIL images and numpy arrays,
//! read under the GIL into [`ImageSource`]s and decoded without it.

use std::path::PathBuf;

use blip3_preprocess::decode::{check_size, decode_bytes, load_path};
use blip3_preprocess::{PreprocessError, RgbImage};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyMemoryView, PyString, PyTuple};

use crate::errors::Failure;

/// Largest image read from a `data:` or `file://` URL (4 GiB).
const MAX_URL_IMAGE_BYTES: usize = u32::MAX as usize;

/// An image as the caller gave it, owned so that decoding can run with the
/// GIL released.
pub enum ImageSource {
    /// A file to read.
    Path(PathBuf),
    /// Encoded PNG/JPEG/WebP/GIF/BMP bytes.
    Bytes(Vec<u8>),
    /// A `data:` or `file://` URL (chat messages).
    Url(String),
    /// Decoded 8-bit RGB pixels, row-major `[height][width][3]`.
    Rgb {
        width: usize,
        height: usize,
        data: Vec<u8>,
    },
}

impl ImageSource {
    /// Decodes the image with the model's pixel limit; errors name the image
    /// by its position (`images[1]`).
    pub fn decode(self, index: usize, max_pixels: u64) -> Result<RgbImage, Failure> {
        let image = |error: PreprocessError| Failure::Image {
            index,
            message: error.to_string(),
        };
        match self {
            Self::Path(path) => load_path(&path, max_pixels).map_err(image),
            Self::Bytes(bytes) => decode_bytes(&bytes, max_pixels).map_err(image),
            Self::Url(url) => {
                // `data:` URLs and `file://` URLs (any local file: the caller
                // can read it anyway), with the server's URL rules. The byte
                // limit only has to stay above any image `max_pixels` admits.
                let policy = blip3_server::media::MediaPolicy {
                    media_root: Some(PathBuf::from("/")),
                    max_image_bytes: MAX_URL_IMAGE_BYTES,
                    ..Default::default()
                };
                let bytes =
                    blip3_server::media::fetch(&url, &policy).map_err(|e| Failure::Image {
                        index,
                        message: e.message,
                    })?;
                decode_bytes(&bytes, max_pixels).map_err(image)
            }
            Self::Rgb {
                width,
                height,
                data,
            } => {
                // Too many pixels for u32 is over any pixel limit anyway.
                let w = u32::try_from(width).unwrap_or(u32::MAX);
                let h = u32::try_from(height).unwrap_or(u32::MAX);
                check_size(w, h, max_pixels).map_err(image)?;
                // The length was checked when the pixels were read.
                Ok(RgbImage::from_raw(width, height, data))
            }
        }
    }
}

/// `images` as a list of sources: `None` (no image), one image, or a list or
/// tuple of images.
pub fn sources(images: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<ImageSource>> {
    let Some(images) = images else {
        return Ok(Vec::new());
    };
    if images.is_none() {
        return Ok(Vec::new());
    }
    if let Ok(list) = images.cast::<PyList>() {
        return list
            .iter()
            .enumerate()
            .map(|(i, item)| source(&item, i))
            .collect();
    }
    if let Ok(tuple) = images.cast::<PyTuple>() {
        return tuple
            .iter()
            .enumerate()
            .map(|(i, item)| source(&item, i))
            .collect();
    }
    Ok(vec![source(images, 0)?])
}

/// The class `module.name` if `module` is already imported (an object of it
/// can only exist then), without importing it.
fn loaded_class<'py>(
    py: Python<'py>,
    module: &str,
    name: &str,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let modules = py.import("sys")?.getattr("modules")?;
    match modules.get_item(module) {
        Ok(m) => Ok(Some(m.getattr(name)?)),
        Err(_) => Ok(None),
    }
}

/// One image argument; `index` names it in errors.
pub fn source(obj: &Bound<'_, PyAny>, index: usize) -> PyResult<ImageSource> {
    let py = obj.py();
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(ImageSource::Path(PathBuf::from(s.to_cow()?.as_ref())));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(ImageSource::Bytes(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(ImageSource::Bytes(b.to_vec()));
    }
    if obj.hasattr("__fspath__")? {
        return Ok(ImageSource::Path(obj.extract::<PathBuf>()?));
    }
    if let Some(class) = loaded_class(py, "PIL.Image", "Image")? {
        if obj.is_instance(&class)? {
            // Pillow's own conversion: the engine decodes files the same way
            // (alpha dropped, grey replicated, palettes expanded).
            let rgb = obj.call_method1("convert", ("RGB",))?;
            let (width, height): (usize, usize) = rgb.getattr("size")?.extract()?;
            let data = rgb.call_method0("tobytes")?;
            let data = data.cast::<PyBytes>()?.as_bytes().to_vec();
            return rgb_source(index, width, height, data);
        }
    }
    if let Some(class) = loaded_class(py, "numpy", "ndarray")? {
        if obj.is_instance(&class)? {
            return array_source(obj, index);
        }
    }
    if obj.cast::<PyMemoryView>().is_ok() {
        let data = obj.call_method0("tobytes")?;
        return Ok(ImageSource::Bytes(
            data.cast::<PyBytes>()?.as_bytes().to_vec(),
        ));
    }
    Err(PyTypeError::new_err(format!(
        "images[{index}]: expected a path, encoded image bytes, a PIL.Image.Image or an \
         HxWx3 uint8 numpy array, got {}",
        obj.get_type().name()?
    )))
}

/// An `HxWx3` `uint8` array.
fn array_source(array: &Bound<'_, PyAny>, index: usize) -> PyResult<ImageSource> {
    let dtype = array.getattr("dtype")?.str()?.to_string();
    let shape: Vec<usize> = array.getattr("shape")?.extract()?;
    let bad = |why: String| {
        crate::errors::image_error(
            array.py(),
            format!("images[{index}]: a numpy image must be an HxWx3 uint8 array (RGB); {why}"),
        )
    };
    if dtype != "uint8" {
        return Err(bad(format!("this one has dtype {dtype}")));
    }
    let [height, width, 3] = shape[..] else {
        return Err(bad(format!("this one has shape {shape:?}")));
    };
    let numpy = array.py().import("numpy")?;
    let contiguous = numpy.call_method1("ascontiguousarray", (array,))?;
    let data = contiguous.call_method0("tobytes")?;
    let data = data.cast::<PyBytes>()?.as_bytes().to_vec();
    rgb_source(index, width, height, data)
}

fn rgb_source(index: usize, width: usize, height: usize, data: Vec<u8>) -> PyResult<ImageSource> {
    let expected = width.checked_mul(height).and_then(|p| p.checked_mul(3));
    if expected != Some(data.len()) {
        return Err(PyTypeError::new_err(format!(
            "images[{index}]: {} bytes of pixels for a {width}x{height} RGB image",
            data.len()
        )));
    }
    Ok(ImageSource::Rgb {
        width,
        height,
        data,
    })
}
