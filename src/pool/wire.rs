//! Messages between a coordinator and its helpers, and their framing.
//!
//! Each message is a postcard-encoded enum behind a 4-byte little-endian
//! length, written with one `write` so a frame is never interleaved. Bulk
//! data never travels here: arrays are passed by segment name.

use std::borrow::Cow;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Largest frame accepted; a longer length prefix means a corrupt stream.
const MAX_FRAME: usize = 256 << 20;

/// Coordinator to helper.
/// Borrows the arguments when sending, so a job keeps them for a rerun.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToHelper<'a> {
    /// Run task number `task` once per argument in `args`.
    Run { job: u64, task: u32, args: Cow<'a, [Vec<u8>]> },
    /// Finish and exit.
    Exit,
}

/// Helper to coordinator.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromHelper {
    /// Started, initialised, and registers these task names in this order.
    Ready { tasks: Vec<String> },
    /// Results of a `Run`, one per argument.
    Done { job: u64, results: Vec<Result<Vec<u8>, Failure>> },
}

/// How a task failed inside a helper.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// The task panicked with this message.
    Panic(String),
    /// The task returned an error; its chain, outermost first.
    Error(Vec<String>),
    /// Arguments or result could not be (de)serialised.
    Codec(String),
    /// No task has that number (the helper registers different tasks).
    Unknown(u32),
}

/// Encodes `msg` into one length-prefixed frame.
pub(crate) fn frame<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = postcard::to_extend(msg, vec![0u8; 4]).expect("encoding into a Vec cannot fail");
    let len = u32::try_from(out.len() - 4).expect("frame over 4 GiB");
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

/// Writes `msg` as one frame.
pub(crate) fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    w.write_all(&frame(msg))
}

/// Reads one frame; `UnexpectedEof` when the peer has gone.
pub(crate) fn recv<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes")));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    postcard::from_bytes(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Serialises a task argument or result.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Failure> {
    postcard::to_stdvec(value).map_err(|e| Failure::Codec(e.to_string()))
}

/// Deserialises a task argument or result.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, Failure> {
    postcard::from_bytes(bytes).map_err(|e| Failure::Codec(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_back_to_back() {
        let mut buf = Vec::new();
        send(&mut buf, &ToHelper::Run { job: 7, task: 2, args: Cow::Owned(vec![vec![1, 2, 3]]) }).unwrap();
        send(&mut buf, &ToHelper::Exit).unwrap();
        let mut r = buf.as_slice();
        assert!(matches!(recv(&mut r).unwrap(), ToHelper::Run { job: 7, task: 2, .. }));
        assert!(matches!(recv(&mut r).unwrap(), ToHelper::Exit));
        assert_eq!(recv::<ToHelper>(&mut r).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn oversized_length_prefix_is_invalid_data() {
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0x7f, 0];
        assert_eq!(recv::<ToHelper>(&mut r).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
