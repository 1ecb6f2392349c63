//! Running other crates' pixel decoders on data a peer controls. Some of them panic on
//! malformed compressed data instead of returning an error (dicom-transfer-syntax-registry
//! 0.10's RLE reader indexes past a segment that decodes short, found by fuzzing); here such a
//! panic is caught and becomes the file's error, so that one damaged file fails its series, not
//! the conversion of the others nor the process.

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Once;

use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{DecodedPixelData, PixelDecoder};

/// An object's pixel data, decoded; a decoder's panic is returned as an error with its message
/// and where it was raised.
pub fn decoded(obj: &DefaultDicomObject) -> Result<DecodedPixelData<'_>, String> {
    quiet_decoder_panics();
    DECODER_PANIC.with(|p| p.borrow_mut().take());
    DECODING.with(|d| d.set(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| obj.decode_pixel_data()));
    DECODING.with(|d| d.set(false));
    match result {
        Ok(decoded) => decoded.map_err(|e| e.to_string()),
        Err(_) => {
            let what = DECODER_PANIC.with(|p| p.borrow_mut().take());
            Err(format!(
                "the decoder failed on malformed pixel data ({})",
                what.unwrap_or_default()
            ))
        }
    }
}

thread_local! {
    /// Set while this thread runs a decoder inside [`decoded`].
    static DECODING: Cell<bool> = const { Cell::new(false) };
    /// What the last decoder panic on this thread said, and where.
    static DECODER_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once, a panic hook that keeps a decoder's panic inside [`decoded`] for its error
/// message instead of printing it (it is caught, and reported with the file it came from), and
/// hands every other panic to the hook installed before it, unchanged.
fn quiet_decoder_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !DECODING.with(Cell::get) {
                return previous(info);
            }
            let at = info.location().map(|l| {
                let file = Path::new(l.file()).file_name().unwrap_or_default();
                format!(" at {}:{}", file.to_string_lossy(), l.line())
            });
            let message = info.payload_as_str().unwrap_or("a panic");
            let what = format!("{message}{}", at.unwrap_or_default());
            DECODER_PANIC.with(|p| *p.borrow_mut() = Some(what));
        }));
    });
}
