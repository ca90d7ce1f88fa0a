//! The head of a segment that is not an array: the shmkit magic, then
//! what the segment holds, as a Python dict literal of numpy dtypes
//! (`{'value': '<u8'}`, `{'key': '|S24', 'value': '<f8'}`), so that a
//! process opening it with other types is refused, and a Python process
//! learns which dtypes to use.
//!
//! ```text
//! 0   "\x93SHMKIT\0"     8   text length u32     12  zero
//! 16  the dict, UTF-8, then zeros up to the data (a multiple of 64)
//! ```
//!
//! Read from a segment other processes write: [`decode`] checks lengths,
//! UTF-8 and syntax, and every tag is re-read by [`Descr::parse`].

use crate::npy::descr::Descr;
use crate::npy::literal::{literal_eval, Value};

use super::layout::{align_up, OTHER_MAGIC};

/// Where the text starts.
const TEXT: usize = 16;
/// Longest text accepted.
pub(crate) const MAX_TEXT: usize = 16 << 10;

/// What a segment holds: `(role, dtype tag)` pairs, such as
/// `("value", "<u8")`; empty for kinds that hold no values.
pub(crate) type Types = Vec<(String, String)>;

/// The head bytes for a segment holding `types` (tags in canonical form).
pub(crate) fn encode(types: &[(&str, String)]) -> Vec<u8> {
    let entries: Vec<String> = types.iter().map(|(role, tag)| format!("'{role}': \"{tag}\"")).collect();
    let text = format!("{{{}}}", entries.join(", "));
    assert!(text.len() <= MAX_TEXT, "types of {} bytes", text.len());
    let len = align_up(TEXT + text.len()).expect("a short head");
    let mut head = vec![0u8; len];
    head[..OTHER_MAGIC.len()].copy_from_slice(OTHER_MAGIC);
    head[8..12].copy_from_slice(&(text.len() as u32).to_le_bytes());
    head[TEXT..TEXT + text.len()].copy_from_slice(text.as_bytes());
    head
}

/// The types in `head` (the bytes before the data); `Err` says what is wrong.
pub(crate) fn decode(head: &[u8]) -> Result<Types, String> {
    let len = head.get(8..12).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
    let text = len.filter(|&n| n <= MAX_TEXT).and_then(|n| head.get(TEXT..TEXT + n));
    let text = text.ok_or("its type description does not fit its head")?;
    let text = std::str::from_utf8(text).map_err(|_| "its type description is not UTF-8")?;
    if text.is_empty() {
        return Ok(Vec::new()); // made before types were recorded: holds none
    }
    let Ok(Value::Dict(entries)) = literal_eval(text, false) else {
        return Err("its type description is not a dict".into());
    };
    entries
        .into_iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(role), Value::Str(tag)) => match Descr::parse(&tag) {
                Ok(d) => Ok((role, d.tag())),
                Err(e) => Err(format!("its {role} type {tag:?} is not a dtype: {e}")),
            },
            _ => Err("its type description is not a dict of strings".into()),
        })
        .collect()
}

/// How `types` read in messages: `value <u8, key |S24`.
pub(crate) fn describe(types: &[(String, String)]) -> String {
    match types.is_empty() {
        true => "no values".into(),
        false => types.iter().map(|(r, t)| format!("{r} {t}")).collect::<Vec<_>>().join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip_and_scribbles_are_refused() {
        let head = encode(&[("key", "|S24".into()), ("value", "[('a', '<u8'), ('b', '<f8', (2,))]".into())]);
        assert_eq!(head.len() % 64, 0);
        assert!(head.starts_with(OTHER_MAGIC));
        let types = decode(&head).unwrap();
        assert_eq!(types[0], ("key".into(), "|S24".into()));
        assert_eq!(types[1].1, "[('a', '<u8'), ('b', '<f8', (2,))]");
        assert_eq!(decode(&encode(&[])).unwrap(), Vec::new());
        let mut bad = head.clone();
        bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&bad).is_err(), "a length past the head");
        let mut bad = head.clone();
        bad[TEXT] = b'[';
        assert!(decode(&bad).is_err(), "not a dict");
        let odd = encode(&[("value", ">f8".into())]);
        assert!(decode(&odd).is_err(), "not a dtype shmkit keeps");
    }
}
