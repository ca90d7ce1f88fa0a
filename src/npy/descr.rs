//! `Descr`: the numpy dtype of a record (what a lock, queue, map or list
//! holds), parsed from and written as one canonical string, so that Rust
//! and Python (numpy) name the same layout the same way.
//!
//! The canonical spellings, each one numpy reads:
//!
//! | dtype | spelling |
//! |---|---|
//! | a number, bytes, text | its `dtype.str`: `<u8`, `|i1`, `<f4`, `<c16`, `|S24`, `<U16`, `|V8` |
//! | an array of one | shape then type: `(4,)<u8`, `(2, 3)<f4` |
//! | a structure | `dtype.descr`: `[('id', '<u8'), ('pos', '<f8', (3,))]` |
//!
//! `numpy.dtype(tag)` reads the first two; `numpy.dtype(ast.literal_eval(tag))`
//! the third. Field names are identifiers (ASCII letters, digits, `_`).
//! Everything here may come from shared memory: parsing checks it all.

use std::fmt;

use super::dtype::NumpyType;
use super::literal::{literal_eval, Value};

/// Deepest nesting of structures and arrays accepted.
const MAX_DEPTH: usize = 16;
/// Longest canonical tag accepted (it is stored in a segment's head).
pub(crate) const MAX_TAG: usize = 4096;

/// A record's numpy dtype.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Descr {
    /// A plain type, by its normalised `dtype.str`.
    Scalar(String),
    /// `shape` items of a type.
    Array(Box<Descr>, Vec<usize>),
    /// Named fields, in order, packed as numpy packs them (padding is a
    /// `|V` field of its own).
    Struct(Vec<(String, Descr)>),
}

impl Descr {
    /// Parses a tag in any spelling numpy gives (`u8` as well as `<u8`),
    /// normalising it; `Err` says what is wrong.
    pub fn parse(tag: &str) -> Result<Descr, String> {
        if tag.len() > MAX_TAG {
            return Err(format!("a dtype of {} characters is longer than {MAX_TAG}", tag.len()));
        }
        Self::parse_at(tag.trim(), 0)
    }

    fn parse_at(tag: &str, depth: usize) -> Result<Descr, String> {
        if depth > MAX_DEPTH {
            return Err("a dtype nested too deeply".into());
        }
        if tag.starts_with('[') {
            let value = literal_eval(tag, false).map_err(|e| format!("not a dtype list: {e:?}"))?;
            return Self::from_fields(value, depth);
        }
        if let Some(rest) = tag.strip_prefix('(') {
            let close = rest.find(')').ok_or("an array dtype's shape has no ')'")?;
            let shape = shape_of(literal_eval(&tag[..close + 2], false).map_err(|e| format!("bad shape: {e:?}"))?)?;
            let base = Self::parse_at(&rest[close + 1..], depth + 1)?;
            return Ok(Descr::Array(Box::new(base), shape));
        }
        scalar(tag).map(Descr::Scalar)
    }

    /// A structure from `[('name', dtype[, shape]), ...]`.
    fn from_fields(value: Value, depth: usize) -> Result<Descr, String> {
        if depth > MAX_DEPTH {
            return Err("a dtype nested too deeply".into());
        }
        let Value::List(items) = value else { return Err("a structured dtype is a list of fields".into()) };
        let mut fields = Vec::with_capacity(items.len());
        for item in items {
            let Value::Tuple(parts) = item else { return Err("a field is a (name, dtype[, shape]) tuple".into()) };
            let mut parts = parts.into_iter();
            let (Some(Value::Str(name)), Some(dt), shape, None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err("a field is a (name, dtype[, shape]) tuple".into());
            };
            if !name.is_empty() && !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("field name {name:?} is not an identifier"));
            }
            let base = match dt {
                Value::Str(s) => Self::parse_at(&s, depth + 1)?,
                list @ Value::List(_) => Self::from_fields(list, depth + 1)?,
                _ => return Err(format!("field {name:?} has no dtype")),
            };
            let descr = match shape {
                None => base,
                Some(s) => Descr::Array(Box::new(base), shape_of(s)?),
            };
            fields.push((name, descr));
        }
        match fields.is_empty() {
            true => Err("a structured dtype needs a field".into()),
            false => Ok(Descr::Struct(fields)),
        }
    }

    /// Bytes one value takes; `None` on overflow.
    pub fn itemsize(&self) -> Option<usize> {
        match self {
            Descr::Scalar(s) => NumpyType::parse(s).map(|t| t.size),
            Descr::Array(base, shape) => shape.iter().try_fold(base.itemsize()?, |n, &d| n.checked_mul(d)),
            Descr::Struct(fields) => fields.iter().try_fold(0usize, |n, (_, d)| n.checked_add(d.itemsize()?)),
        }
    }

    /// The canonical tag.
    pub fn tag(&self) -> String {
        self.to_string()
    }

    /// How this type is written as a field of a structure: `'<u8'`,
    /// `'<u8', (4,)` or a nested list.
    fn field(&self) -> String {
        match self {
            Descr::Scalar(s) => format!("'{s}'"),
            Descr::Array(base, shape) => format!("{}, {}", base.field(), tuple(shape)),
            Descr::Struct(_) => self.to_string(),
        }
    }
}

impl fmt::Display for Descr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Descr::Scalar(s) => f.write_str(s),
            Descr::Array(base, shape) => write!(f, "{}{base}", tuple(shape)),
            Descr::Struct(fields) => {
                let fields: Vec<String> = fields.iter().map(|(n, d)| format!("('{n}', {})", d.field())).collect();
                write!(f, "[{}]", fields.join(", "))
            }
        }
    }
}

/// A structure's tag from `(field name, field tag)` pairs, for
/// [`record!`](crate::record). A malformed field tag (a hand-written
/// [`Record`](crate::Record) impl's) is kept as written, so that the tag
/// does not parse and the segment call that checks it fails with
/// `InvalidArgument`, naming the type, rather than panicking here.
pub(crate) fn struct_tag(fields: &[(&str, String)]) -> String {
    let parsed: Result<Vec<(String, Descr)>, String> =
        fields.iter().map(|(n, t)| Descr::parse(t).map(|d| ((*n).to_owned(), d))).collect();
    match parsed {
        Ok(fields) => Descr::Struct(fields).tag(),
        Err(_) => format!("[{}]", fields.iter().map(|(n, t)| format!("('{n}', '{t}')")).collect::<Vec<_>>().join(", ")),
    }
}

/// A shape tuple as Python writes it: `(4,)`, `(2, 3)`.
fn tuple(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// A shape from a parsed tuple (or a lone int, as numpy allows).
fn shape_of(v: Value) -> Result<Vec<usize>, String> {
    let dims = match v {
        Value::Tuple(d) => d,
        int @ Value::Int(_) => vec![int],
        _ => return Err("a shape is a tuple of sizes".into()),
    };
    let shape: Vec<usize> = dims
        .into_iter()
        .map(|d| match d {
            Value::Int(Some(n)) if (1..=1 << 40).contains(&n) => Ok(n as usize),
            _ => Err("an array dtype's sizes are positive integers".to_string()),
        })
        .collect::<Result<_, _>>()?;
    match shape.is_empty() || shape.len() > 32 {
        true => Err("an array dtype has 1 to 32 axes".into()),
        false => Ok(shape),
    }
}

/// A plain type's normalised `dtype.str`: byte order `|` for one-byte
/// types and bytes, `<` for the rest (shmkit hosts are little-endian).
fn scalar(s: &str) -> Result<String, String> {
    let t = NumpyType::parse(s).ok_or_else(|| format!("{s:?} is not a numpy type shmkit keeps"))?;
    if t.big_endian {
        return Err(format!("{s:?} is big-endian; shmkit keeps little-endian values"));
    }
    let (order, n) = match t.kind {
        'S' | 'V' => ('|', t.size),
        'U' => ('<', t.size / 4),
        'b' | 'i' | 'u' if t.size == 1 => ('|', 1),
        'b' | 'i' | 'u' | 'f' | 'c' => ('<', t.size),
        _ => return Err(format!("{s:?}: dates and times are not kept in records")),
    };
    match (t.kind, n) {
        ('S' | 'V' | 'U', 0) => Err(format!("{s:?} holds nothing")),
        _ => Ok(format!("{order}{}{n}", t.kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_normalised_and_round_trip() {
        for (given, canonical, size) in [
            ("u8", "<u8", 8),
            ("|u1", "|u1", 1),
            ("i1", "|i1", 1),
            ("<f4", "<f4", 4),
            ("S24", "|S24", 24),
            ("<U16", "<U16", 64),
            ("(4,)<u8", "(4,)<u8", 32),
            ("(2,3)f4", "(2, 3)<f4", 24),
            ("[('id', 'u8'), ('pos', '<f8', (3,))]", "[('id', '<u8'), ('pos', '<f8', (3,))]", 32),
            ("[('a', [('b', '|u1')]), ('c', '(2,)<i2')]", "[('a', [('b', '|u1')]), ('c', '<i2', (2,))]", 5),
        ] {
            let d = Descr::parse(given).unwrap_or_else(|e| panic!("{given}: {e}"));
            assert_eq!(d.tag(), canonical, "{given}");
            assert_eq!(Descr::parse(&d.tag()), Ok(d.clone()), "{given}: the canonical tag parses to itself");
            assert_eq!(d.itemsize(), Some(size), "{given}");
        }
    }

    #[test]
    fn what_records_cannot_hold_is_refused_with_a_reason() {
        for bad in [">u8", "float64", "<M8[ns]", "S0", "[]", "[('a b', '<u8')]", "(0,)<u8", "[('a', 3)]", "((("] {
            assert!(Descr::parse(bad).is_err(), "{bad} was accepted");
        }
        let deep = format!("{}<u8", "(2,)".repeat(40));
        assert!(Descr::parse(&deep).is_err(), "nesting is bounded");
        assert!(Descr::parse(&"x".repeat(MAX_TAG + 1)).is_err());
    }

    #[test]
    fn struct_tags_are_built_from_field_tags() {
        let t = struct_tag(&[("id", "<u8".into()), ("v", "(3,)<f8".into())]);
        assert_eq!(t, "[('id', '<u8'), ('v', '<f8', (3,))]");
    }
}
