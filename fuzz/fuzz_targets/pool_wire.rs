//! The pool's wire decoder: any bytes arriving on a helper's socket, in
//! either direction, decode to messages or errors, never a panic or an
//! unbounded allocation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shmkit::fuzzing::decode_frames(data);
});
