//! Entry points for the `cargo fuzz` targets in `fuzz/` (compiled only
//! with `--cfg fuzzing`, which `cargo fuzz` sets). Each feeds untrusted
//! bytes to one of shmkit's readers; any outcome but a panic, a hang or a
//! stack overflow is fine.

use crate::pool::wire::{FrameReader, FromHelper, ToHelper};
use crate::segment::{pyliteral, read_layout, Header, TRAILER_LEN};

/// `data` as the bytes of a whole segment: the validating reader (header,
/// trailer, lengths), the `.npy` header decoder, and the literal parser.
pub fn read_segment(data: &[u8]) {
    let tail = data.len().checked_sub(TRAILER_LEN).map(|at| <&[u8; TRAILER_LEN]>::try_from(&data[at..]).unwrap());
    let _ = read_layout(data.len(), data, tail);
    let _ = Header::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pyliteral::literal_eval(text, false);
        let _ = pyliteral::literal_eval(text, true);
    }
}

/// `data` as bytes arriving on a helper's socket, read as frames for a
/// helper and as frames for a coordinator.
pub fn decode_frames(data: &[u8]) {
    let mut r = FrameReader::from_bytes(data);
    while let Some(Ok(_)) = r.next::<ToHelper>() {}
    let mut r = FrameReader::from_bytes(data);
    while let Some(Ok(_)) = r.next::<FromHelper>() {}
}
