//! How task arguments and results become bytes: a run of items one after
//! another in one buffer (an `Items`), never a buffer per item.
//!
//! Plain numbers (`u8`…`u128`, `i8`…`i128`, `usize`, `isize`, `f32`,
//! `f64`) are copied as their bytes: a chunk of 1000 `u64` is one
//! 8000-byte copy each way. Everything else goes through `postcard`.

use std::any::TypeId;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::pool::transport::wire::{Appender, Failure, Items};

/// The items of `batch`, decoded as `T`, in order: `Err` for failed ones
/// (and for every item after one that cannot be decoded: the rest cannot
/// be found).
pub(crate) fn items<T: DeserializeOwned + 'static>(batch: &Items) -> impl Iterator<Item = Result<T, Failure>> + '_ {
    let mut input = batch.data.as_slice();
    let mut failures = batch.failures.iter().peekable();
    let mut lost: Option<Failure> = None;
    (0..batch.count).map(move |i| {
        if let Some((_, why)) = failures.next_if(|(at, _)| *at == i) {
            return Err(why.clone());
        }
        if let Some(why) = &lost {
            return Err(why.clone());
        }
        take::<T>(&mut input).inspect_err(|e| lost = Some(e.clone()))
    })
}

/// The size of `T` if it is a plain number, copied as bytes.
fn raw_size<T: 'static>() -> Option<usize> {
    let id = TypeId::of::<T>();
    macro_rules! any_of {
        ($($t:ty),*) => { false $(|| id == TypeId::of::<$t>())* };
    }
    any_of!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64).then(size_of::<T>)
}

/// Appends `value`'s encoding to `out`. On failure `out` is as it was.
pub(crate) fn put<T: Serialize + 'static>(out: &mut Vec<u8>, value: &T) -> Result<(), Failure> {
    if let Some(n) = raw_size::<T>() {
        // SAFETY: `raw_size` returned Some, so T is one of the plain number
        // types listed there: `n` initialised bytes with no padding, which
        // `value` points to for the duration of this borrow.
        let bytes = unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), n) };
        out.extend_from_slice(bytes);
        return Ok(());
    }
    let before = out.len();
    match postcard::to_extend(value, Appender(out)) {
        Ok(_) => Ok(()),
        Err(e) => {
            out.truncate(before);
            Err(Failure::Codec(e.to_string()))
        }
    }
}

/// Decodes one `T` from the front of `input` and advances past it.
pub(crate) fn take<T: DeserializeOwned + 'static>(input: &mut &[u8]) -> Result<T, Failure> {
    if let Some(n) = raw_size::<T>() {
        let Some((bytes, rest)) = input.split_at_checked(n) else {
            return Err(Failure::Codec(format!(
                "{} bytes left, a {} takes {n}",
                input.len(),
                std::any::type_name::<T>()
            )));
        };
        // SAFETY: T is a plain number type (see `raw_size`): every pattern of
        // its `n` bytes is a valid value; `bytes` holds exactly `n` bytes,
        // read unaligned.
        let value = unsafe { bytes.as_ptr().cast::<T>().read_unaligned() };
        *input = rest;
        return Ok(value);
    }
    let (value, rest) = postcard::take_from_bytes(input).map_err(|e| Failure::Codec(e.to_string()))?;
    *input = rest;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_travel_as_bytes_and_the_rest_as_postcard_one_after_another() {
        let mut out = Vec::new();
        for x in [1u64, 2, u64::MAX] {
            put(&mut out, &x).unwrap();
        }
        assert_eq!(out.len(), 24, "three u64 are 24 bytes");
        put(&mut out, &String::from("hi")).unwrap();
        put(&mut out, &(1u8, -2.5f32)).unwrap();
        let mut input = out.as_slice();
        assert_eq!([take::<u64>(&mut input), take(&mut input), take(&mut input)], [Ok(1), Ok(2), Ok(u64::MAX)]);
        assert_eq!(take::<String>(&mut input), Ok("hi".into()));
        assert_eq!(take::<(u8, f32)>(&mut input), Ok((1, -2.5)));
        assert!(input.is_empty());
        assert!(take::<u32>(&mut &[1u8, 2][..]).is_err(), "two bytes are not a u32");
    }

    #[test]
    fn failed_items_take_no_bytes_and_a_lost_item_fails_the_rest() {
        let mut b = Items::with_count(4);
        put(&mut b.data, &10u32).unwrap();
        b.fail(1, Failure::Panic("boom".into()));
        put(&mut b.data, &30u32).unwrap();
        put(&mut b.data, &40u32).unwrap();
        let got: Vec<_> = items::<u32>(&b).collect();
        assert_eq!(got, [Ok(10), Err(Failure::Panic("boom".into())), Ok(30), Ok(40)]);
        let short = Items { data: vec![1, 0, 0, 0, 9], count: 3, failures: Vec::new() };
        let got: Vec<_> = items::<u32>(&short).collect();
        assert!(got[0] == Ok(1) && got[1].is_err() && got[2].is_err(), "{got:?}");
    }
}
