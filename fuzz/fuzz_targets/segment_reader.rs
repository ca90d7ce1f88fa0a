//! The validating reader of a segment's bytes (header, trailer, lengths)
//! and the Python-literal parser under it: any bytes, no panic, no hang,
//! no stack overflow.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shmkit::fuzzing::read_segment(data);
});
