//! Entry points for the `cargo fuzz` targets in `fuzz/` (compiled only
//! with `--cfg fuzzing`, which `cargo fuzz` sets). Each feeds untrusted
//! bytes to one of shmkit's readers; any outcome but a panic, a hang or a
//! stack overflow is fine.

use crate::npy::header::Header;
use crate::npy::literal as pyliteral;
use crate::pool::codec::items;
use crate::pool::wire::{Failure, FrameReader, FromHelper, Items, ToHelper};
use crate::segment::{read_layout, TRAILER_LEN};

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

/// Items decoded per fuzzed batch at most. The pool itself checks a
/// result batch's count against its job's before decoding; past the data's
/// end every item is the same error, so more would only slow the fuzzer.
const MAX_FUZZ_ITEMS: u32 = 1 << 10;

/// `data` as bytes arriving through a helper's ring, read as frames for a
/// helper and as frames for a coordinator; every batch of results is
/// decoded as numbers (copied as bytes) and as strings (postcard).
pub fn decode_frames(data: &[u8]) {
    let mut r = FrameReader::from_bytes(data);
    while let Some(Ok(msg)) = r.next::<ToHelper>() {
        if let ToHelper::Run { count, args, .. } = msg {
            let batch = Items { data: args.into_owned(), count: count.min(MAX_FUZZ_ITEMS), failures: Vec::new() };
            decode_all::<u64>(&batch);
            decode_all::<(String, i32)>(&batch);
        }
    }
    let mut r = FrameReader::from_bytes(data);
    while let Some(Ok(msg)) = r.next::<FromHelper>() {
        if let FromHelper::Done { mut results, .. } = msg {
            results.count = results.count.min(MAX_FUZZ_ITEMS); // a count is not a length to trust; cap the work
            decode_all::<u64>(&results);
            decode_all::<String>(&results);
        }
    }
}

/// Decodes `batch`'s items up to the first that cannot be decoded (every
/// later one repeats that error: nothing new for the fuzzer to find).
fn decode_all<T: serde::de::DeserializeOwned + 'static>(batch: &Items) {
    for item in items::<T>(batch) {
        if matches!(item, Err(Failure::Codec(_))) {
            break;
        }
    }
}
