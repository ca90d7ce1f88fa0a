//! Which functions helpers can run, under which numbers.
//!
//! Coordinator and helpers build the same registry by calling the same
//! `fn tasks(r: &mut Registry)`, so a task's number (its registration
//! index) means the same function on both sides. Helpers report their
//! task names when they start, and the pool refuses helpers whose list
//! differs, so a mismatched helper binary is an error, not a wrong call.

use std::any::{type_name, TypeId};
use std::collections::HashMap;
use std::marker::PhantomData;

use ndarray::{ArrayView, ArrayViewMut, Dimension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::pool::helper::cache::Cache;
use crate::pool::helper::panics;
use crate::pool::transport::codec;
use crate::pool::transport::wire::{ChunkArgs, Failure, Items};
use crate::{Element, SharedArray};

/// Runs a task in a helper on `count` arguments encoded one after another:
/// a batch of results (or failures) back, one per argument. Opaque: made
/// by [`Task::handler`] for the shapes [`Registry::add`] accepts.
#[doc(hidden)]
pub struct Handler(HandlerFn);

type HandlerFn = Box<dyn Fn(&mut Cache, &[u8], u32) -> Items + Send + Sync>;

/// Adds the built-in reductions (see `builtin`), always first and in the
/// same order, so that their numbers agree in every process.
fn register_builtins(r: &mut Registry) {
    use crate::pool::helper::builtin::{max, min, sum};
    macro_rules! all {
        ($($t:ty),*) => {$(
            r.add(sum::<$t>);
            r.add(min::<$t>);
            r.add(max::<$t>);
        )*};
    }
    all!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);
}

/// `F`'s path without its crate: a helper binary that includes the same
/// task module under another crate name still matches.
fn task_name<F>() -> &'static str {
    let full = type_name::<F>();
    full.split_once("::").map_or(full, |(_, rest)| rest)
}

/// The set of functions a pool's helpers can run.
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
/// fn add(a: i32, b: i32) -> i32 { a + b }
///
/// fn tasks(r: &mut shmkit::Registry) {
///     r.add(square);
///     r.add(add);
///     r.add(|v: ndarray::ArrayViewMut1<f64>| v.into_iter().for_each(|x| *x *= 2.0));
/// }
/// # let mut r = shmkit::Registry::new(); tasks(&mut r);
/// ```
pub struct Registry {
    entries: Vec<(&'static str, Handler)>,
    index: HashMap<TypeId, u32>,
}

impl Registry {
    /// An empty registry, apart from the built-in reductions.
    pub fn new() -> Registry {
        let mut r = Registry { entries: Vec::new(), index: HashMap::new() };
        register_builtins(&mut r);
        r
    }

    /// Registers task `f`: a function (or non-capturing closure) taking
    /// `serde` arguments (one, or two to four passed as a tuple), returning a
    /// `serde` value or a `Result` whose error converts to `anyhow::Error`;
    /// or taking an `ArrayView`/`ArrayViewMut` of a shared array's rows.
    /// Registering the same function twice is harmless.
    pub fn add<M, F: Task<M>>(&mut self, f: F) -> &mut Registry {
        let id = TypeId::of::<F>();
        if !self.index.contains_key(&id) {
            self.index.insert(id, self.entries.len() as u32);
            self.entries.push((task_name::<F>(), f.handler()));
        }
        self
    }

    /// The number of task `F`, if registered.
    pub(crate) fn id_of<F: 'static>(&self) -> Option<u32> {
        self.index.get(&TypeId::of::<F>()).copied()
    }

    /// Task names in registration order, as helpers report them.
    pub(crate) fn names(&self) -> Vec<String> {
        self.entries.iter().map(|(n, _)| (*n).to_owned()).collect()
    }

    /// Runs task `id` on `count` encoded `args`.
    pub(crate) fn run(&self, cache: &mut Cache, id: u32, args: &[u8], count: u32) -> Items {
        match self.entries.get(id as usize) {
            Some((_, handler)) => (handler.0)(cache, args, count),
            None => {
                let mut out = Items::with_count(count);
                (0..count).for_each(|i| out.fail(i, Failure::Unknown(id)));
                out
            }
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

/// A function a helper can run; implemented for the shapes [`Registry::add`]
/// accepts. `M` only tells the shapes apart.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a function a shmkit pool can run",
    label = "not a pool task",
    note = "a task is a plain `fn` (or a closure that captures nothing) taking serde arguments (one, or two to four), \
            returning a serde value or a `Result` whose error converts to `anyhow::Error`; or taking the rows of a shared \
            array: `ArrayViewMut<T, D>` / `ArrayView<T, D>`, after `usize` (the first row) or `&P` (a parameter)",
    note = "if it does take an `ArrayView`: the crate's ndarray must be the one shmkit uses (`shmkit::ndarray`); \
            two ndarray versions in one build make these types differ",
    note = "a closure that captures a value is not a task (helpers cannot see the value): pass it as an argument, \
            or use `for_each_chunk_mut_with` / `reduce_with` for a chunk task's parameter"
)]
pub trait Task<M>: Copy + Send + Sync + 'static {
    /// The arguments, as sent to the helper.
    type Args: Serialize + DeserializeOwned + 'static;
    /// What the coordinator gets back.
    type Output: Serialize + DeserializeOwned + 'static;
    /// The helper-side wrapper.
    #[doc(hidden)]
    fn handler(self) -> Handler;
}

/// Marker: `Fn(A) -> R`.
pub struct Plain<A, R>(PhantomData<(A, R)>);
/// Marker: `Fn(A) -> Result<R, E>` with `E: Into<anyhow::Error>`.
pub struct Fallible<A, R, E>(PhantomData<(A, R, E)>);
/// Marker: `Fn(ArrayViewMut<T, D>) -> R` over a shared array's rows.
pub struct RowsMut<T, D, R>(PhantomData<(T, D, R)>);
/// Marker: `Fn(ArrayView<T, D>) -> R` over a shared array's rows.
pub struct Rows<T, D, R>(PhantomData<(T, D, R)>);
/// Marker: `Fn(usize, ArrayViewMut<T, D>) -> R`, given the first row's index.
pub struct RowsMutAt<T, D, R>(PhantomData<(T, D, R)>);
/// Marker: `Fn(usize, ArrayView<T, D>) -> R`, given the first row's index.
pub struct RowsAt<T, D, R>(PhantomData<(T, D, R)>);
/// Marker: `Fn(&P, ArrayViewMut<T, D>) -> R`, given a parameter (see
/// `for_each_chunk_mut_with`).
pub struct RowsMutWith<P, T, D, R>(PhantomData<(P, T, D, R)>);
/// Marker: `Fn(&P, ArrayView<T, D>) -> R`, given a parameter (see `reduce_with`).
pub struct RowsWith<P, T, D, R>(PhantomData<(P, T, D, R)>);

mod sealed {
    pub trait Sealed {}
}

/// Tasks called with arguments: what `map`, `submit` and initializers
/// take. Row tasks are not: their rows come only from an array operation,
/// which holds the array's claim while they run. Sealed.
pub trait Call: sealed::Sealed {}
impl<A, R> sealed::Sealed for Plain<A, R> {}
impl<A, R> Call for Plain<A, R> {}
impl<A, R, E> sealed::Sealed for Fallible<A, R, E> {}
impl<A, R, E> Call for Fallible<A, R, E> {}

/// Row tasks that may write their rows: what `for_each_chunk_mut` takes. Sealed.
pub trait WritesRows<T, D>: sealed::Sealed {}
impl<T, D, R> sealed::Sealed for RowsMut<T, D, R> {}
impl<T, D, R> WritesRows<T, D> for RowsMut<T, D, R> {}
impl<T, D, R> sealed::Sealed for RowsMutAt<T, D, R> {}
impl<T, D, R> WritesRows<T, D> for RowsMutAt<T, D, R> {}
impl<P, T, D, R> sealed::Sealed for RowsMutWith<P, T, D, R> {}
impl<P, T, D, R> WritesRows<T, D> for RowsMutWith<P, T, D, R> {}

/// Row tasks that read their rows: what `reduce` takes. Sealed.
pub trait ReadsRows<T, D>: sealed::Sealed {}
impl<T, D, R> sealed::Sealed for Rows<T, D, R> {}
impl<T, D, R> ReadsRows<T, D> for Rows<T, D, R> {}
impl<T, D, R> sealed::Sealed for RowsAt<T, D, R> {}
impl<T, D, R> ReadsRows<T, D> for RowsAt<T, D, R> {}
impl<P, T, D, R> sealed::Sealed for RowsWith<P, T, D, R> {}
impl<P, T, D, R> ReadsRows<T, D> for RowsWith<P, T, D, R> {}

/// Runs `one` on each of `count` arguments decoded from `args` and encodes
/// the results one after another: a panic or an error fails its own item
/// only. One panic guard covers a run of items and is set again after a
/// panic, from the next item on (a guard per item cost a third of the
/// time of tiny tasks).
fn run_batch<A, R>(args: &[u8], count: u32, mut one: impl FnMut(A) -> Result<R, Failure>) -> Items
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let (mut input, mut out) = (args, Items::with_count(count));
    out.data.reserve(args.len());
    let mut lost: Option<Failure> = None;
    let (mut i, mut item_start, mut taken) = (0, 0, false);
    while i < count {
        // `taken` is read after a panic, which the unused-assignment lint
        // cannot see.
        #[allow(unused_assignments)]
        let guarded = panics::catching(|| {
            while i < count {
                (item_start, taken) = (out.data.len(), false);
                let arg = match &lost {
                    Some(why) => Err(why.clone()),
                    None => codec::take::<A>(&mut input).inspect_err(|e| lost = Some(e.clone())), // the rest cannot be found
                };
                taken = true;
                if let Err(why) = arg.and_then(&mut one).and_then(|r| codec::put(&mut out.data, &r)) {
                    out.fail(i, why);
                }
                i += 1;
            }
            Ok(())
        });
        if let Err(panic) = guarded {
            // Item i panicked: in the task, or in decoding its argument
            // (then where the next one starts is unknown: the rest fail),
            // or in encoding its result (whose partial bytes go).
            out.data.truncate(item_start);
            if !taken && lost.is_none() {
                lost = Some(Failure::Codec(format!("decoding an argument panicked: {panic:?}")));
            }
            out.fail(i, panic);
            i += 1;
        }
    }
    out
}

fn plain<A, R>(f: impl Fn(A) -> R + Send + Sync + 'static) -> Handler
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    Handler(Box::new(move |_, args, count| run_batch(args, count, |a| Ok(f(a)))))
}

fn fallible<A, R, E>(f: impl Fn(A) -> Result<R, E> + Send + Sync + 'static) -> Handler
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
    E: Into<anyhow::Error>,
{
    Handler(Box::new(move |_, args, count| run_batch(args, count, |a| f(a).map_err(|e| error_chain(e.into())))))
}

impl<F, A, R> Task<Plain<A, R>> for F
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    type Args = A;
    type Output = R;
    fn handler(self) -> Handler {
        plain(self)
    }
}

impl<F, A, R, E> Task<Fallible<A, R, E>> for F
where
    F: Fn(A) -> Result<R, E> + Copy + Send + Sync + 'static,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
    E: Into<anyhow::Error>,
{
    type Args = A;
    type Output = R;
    fn handler(self) -> Handler {
        fallible(self)
    }
}

macro_rules! multi_arg {
    ($plain:ident, $fallible:ident, $n:literal: $($a:ident),+) => {
        #[doc = concat!("Marker: `Fn` of ", $n, " arguments, given as a tuple, `-> R`.")]
        pub struct $plain<$($a,)+ R>(PhantomData<($($a,)+ R)>);
        #[doc = concat!("Marker: `Fn` of ", $n, " arguments, given as a tuple, `-> Result<R, E>`.")]
        pub struct $fallible<$($a,)+ R, E>(PhantomData<($($a,)+ R, E)>);
        impl<$($a,)+ R> sealed::Sealed for $plain<$($a,)+ R> {}
        impl<$($a,)+ R> Call for $plain<$($a,)+ R> {}
        impl<$($a,)+ R, E> sealed::Sealed for $fallible<$($a,)+ R, E> {}
        impl<$($a,)+ R, E> Call for $fallible<$($a,)+ R, E> {}

        #[allow(non_snake_case)] // the type parameters double as argument names
        impl<F, $($a,)+ R> Task<$plain<$($a,)+ R>> for F
        where
            F: Fn($($a),+) -> R + Copy + Send + Sync + 'static,
            ($($a,)+): Serialize + DeserializeOwned + 'static,
            R: Serialize + DeserializeOwned + 'static,
        {
            type Args = ($($a,)+);
            type Output = R;
            fn handler(self) -> Handler {
                plain(move |($($a,)+)| self($($a),+))
            }
        }

        #[allow(non_snake_case)]
        impl<F, $($a,)+ R, E> Task<$fallible<$($a,)+ R, E>> for F
        where
            F: Fn($($a),+) -> Result<R, E> + Copy + Send + Sync + 'static,
            ($($a,)+): Serialize + DeserializeOwned + 'static,
            R: Serialize + DeserializeOwned + 'static,
            E: Into<anyhow::Error>,
        {
            type Args = ($($a,)+);
            type Output = R;
            fn handler(self) -> Handler {
                fallible(move |($($a,)+)| self($($a),+))
            }
        }
    };
}

multi_arg!(Plain2, Fallible2, "two": A, B);
multi_arg!(Plain3, Fallible3, "three": A, B, C);
multi_arg!(Plain4, Fallible4, "four": A, B, C, D);

/// An error and its causes, outermost first, as strings.
pub(crate) fn error_chain(e: anyhow::Error) -> Failure {
    Failure::Error(e.chain().map(ToString::to_string).collect())
}

/// Wraps a row task: find where the rows are, attach (cached), run. A
/// failure to attach fails the item before its task begins (a pass
/// reports those rows as not applied).
fn rows_handler<T: Element, D: Dimension + 'static, R: Serialize + 'static>(
    run: impl Fn(&mut SharedArray<T, D>, &ChunkArgs) -> Result<R, crate::Error> + Send + Sync + 'static,
) -> Handler {
    Handler(Box::new(move |cache, bytes, count| {
        run_batch(bytes, count, |args: ChunkArgs| {
            let array = cache.array::<T, D>(&args).map_err(|e| error_chain(e.into()))?;
            run(array, &args).map_err(|e| error_chain(e.into()))
        })
    }))
}

macro_rules! row_task {
    ($marker:ident, ($($at:ty)?), $view:ident, $method:ident, |$f:ident, $a:ident, $args:ident, $rows:ident| $call:expr) => {
        impl<F, T, D, R> Task<$marker<T, D, R>> for F
        where
            F: for<'a> Fn($($at,)? $view<'a, T, D>) -> R + Copy + Send + Sync + 'static,
            T: Element,
            D: Dimension + 'static,
            R: Serialize + DeserializeOwned + 'static,
        {
            type Args = ChunkArgs;
            type Output = R;
            fn handler(self) -> Handler {
                let $f = self;
                rows_handler(move |$a: &mut SharedArray<T, D>, $args: &ChunkArgs| {
                    // SAFETY: a chunk job comes only from an array operation
                    // (`Call` keeps row tasks out of `map`, `submit` and
                    // initializers), whose caller holds a claim on every row
                    // of the array, exclusive for a mutable pass, until every
                    // chunk has answered, and gives each chunk distinct rows:
                    // no other shmkit view of these rows exists in any
                    // process, and no other chunk writes them.
                    let $rows = unsafe { $a.$method($args.start..$args.end)? };
                    Ok($call)
                })
            }
        }
    };
}

/// Wraps a row task with a parameter: as [`rows_handler`], the parameter
/// decoded once per chunk, after the chunk's rows.
fn param_rows_handler<P, T, D, R>(
    run: impl Fn(&mut SharedArray<T, D>, &ChunkArgs, &P) -> Result<R, crate::Error> + Send + Sync + 'static,
) -> Handler
where
    P: DeserializeOwned + 'static,
    T: Element,
    D: Dimension + 'static,
    R: Serialize + 'static,
{
    Handler(Box::new(move |cache, bytes, count| {
        run_batch(bytes, count, |(args, param): (ChunkArgs, P)| {
            let array = cache.array::<T, D>(&args).map_err(|e| error_chain(e.into()))?;
            run(array, &args, &param).map_err(|e| error_chain(e.into()))
        })
    }))
}

macro_rules! param_row_task {
    ($marker:ident, $view:ident, $method:ident) => {
        impl<F, P, T, D, R> Task<$marker<P, T, D, R>> for F
        where
            F: for<'a, 'p> Fn(&'p P, $view<'a, T, D>) -> R + Copy + Send + Sync + 'static,
            P: Serialize + DeserializeOwned + 'static,
            T: Element,
            D: Dimension + 'static,
            R: Serialize + DeserializeOwned + 'static,
        {
            type Args = (ChunkArgs, P);
            type Output = R;
            fn handler(self) -> Handler {
                param_rows_handler(move |a: &mut SharedArray<T, D>, args: &ChunkArgs, param: &P| {
                    // SAFETY: as for the row tasks above: chunks come only
                    // from an array operation holding the claim of every row,
                    // each chunk with its own rows.
                    let rows = unsafe { a.$method(args.start..args.end)? };
                    Ok(self(param, rows))
                })
            }
        }
    };
}

param_row_task!(RowsMutWith, ArrayViewMut, rows_mut_unchecked);
param_row_task!(RowsWith, ArrayView, rows_unchecked);

row_task!(RowsMut, (), ArrayViewMut, rows_mut_unchecked, |f, a, args, rows| f(rows));
row_task!(Rows, (), ArrayView, rows_unchecked, |f, a, args, rows| f(rows));
row_task!(RowsMutAt, (usize), ArrayViewMut, rows_mut_unchecked, |f, a, args, rows| f(args.start, rows));
row_task!(RowsAt, (usize), ArrayView, rows_unchecked, |f, a, args, rows| f(args.start, rows));

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Deserializer};

    /// A type whose decoding panics on 3.
    #[derive(Debug, Serialize)]
    struct Touchy(u32);

    impl<'de> Deserialize<'de> for Touchy {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let n = u32::deserialize(d)?;
            assert!(n != 3, "three");
            Ok(Touchy(n))
        }
    }

    #[test]
    fn a_panic_in_decoding_fails_the_rest_and_one_in_the_task_only_its_item() {
        let mut args = Vec::new();
        (0..6u32).for_each(|n| codec::put(&mut args, &Touchy(n)).unwrap());
        let out = run_batch(&args, 6, |t: Touchy| Ok(t.0 * 10));
        let got: Vec<_> = codec::items::<u32>(&out).collect();
        assert_eq!(got[..3], [Ok(0), Ok(10), Ok(20)]);
        assert!(got[3..].iter().all(Result::is_err), "item 3 and all after it: {got:?}");
        let mut args = Vec::new();
        (0..6u32).for_each(|n| codec::put(&mut args, &n).unwrap());
        let out = run_batch(&args, 6, |n: u32| {
            assert!(n != 2, "two");
            Ok(n)
        });
        let got: Vec<_> = codec::items::<u32>(&out).collect();
        assert!(got[2].is_err() && got.iter().enumerate().all(|(i, r)| i == 2 || *r == Ok(i as u32)), "{got:?}");
    }
}
