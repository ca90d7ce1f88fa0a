"""Shared arrays from Python: zero-copy views that keep their mapping
alive, lifetimes (owner removes, openers and forked children never do),
claims, and the same segments as Rust and numpy."""

from __future__ import annotations

import gc
import os
import pickle

import numpy as np
import pytest
from conftest import dev_shm, run_python, unique

import shmkit


def test_a_view_is_zero_copy_writable_and_keeps_the_handle(name: str) -> None:
    a = shmkit.create(name, (3, 4), "f4")
    assert (a.name, a.shape, a.dtype, a.ndim, a.size, a.nbytes) == (name, (3, 4), np.float32, 2, 12, 48)
    assert a.is_owner and not a.closed and len(a) == 3
    v = np.asarray(a)
    assert isinstance(v, np.ndarray) and v.flags.writeable and v.base is a
    v[1, 2] = 7
    b = shmkit.open(name)
    assert not b.is_owner and b.shape == (3, 4) and b.dtype == np.float32
    assert np.asarray(b)[1, 2] == 7, "the same memory through another handle"
    np.asarray(b)[0, 0] = 1
    assert v[0, 0] == 1
    assert repr(a) == f"shmkit.SharedArray(\"{name}\", shape=(3, 4), dtype='<f4', owner)"
    a.close()


def test_views_outlive_close_and_the_handle_without_a_segfault(name: str) -> None:
    a = shmkit.create(name, 1000, "i8")
    v = np.asarray(a)
    v[:] = np.arange(1000)
    a.close()
    assert a.closed and name not in dev_shm(), "close() removed the name at once"
    with pytest.raises(shmkit.NotFound):
        shmkit.open(name)
    with pytest.raises(shmkit.Closed):
        np.asarray(a)
    del a
    gc.collect()
    assert v.sum() == 999 * 1000 // 2, "the mapping lives while a view does (unmap is deferred)"
    v[:] = 1
    assert v.sum() == 1000
    # A claimed view too.
    b = shmkit.create_unique(10, "u1")
    with b.rows_mut(0, 10) as w:
        pass
    b.close()
    del b
    gc.collect()
    w[:] = 3
    assert int(w.sum()) == 30


def test_an_unsupported_dtype_names_the_supported_ones() -> None:
    for dtype in ["U4", "c16", ">f8", "O", "f2", [("a", "i4")]]:
        with pytest.raises(shmkit.UnsupportedDtype, match="float64") as e:
            shmkit.create_unique(4, dtype)
        assert isinstance(e.value, TypeError) and isinstance(e.value, shmkit.Error)
    for dtype in ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8", np.float64, int, float]:
        with shmkit.create_unique((2, 2), dtype) as a:
            assert a.dtype == np.dtype(dtype)


def test_create_from_copies_the_data_before_the_name_appears(name: str) -> None:
    data = np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4))
    a = shmkit.create_from(name, data)
    assert a.shape == (3, 4) and (np.asarray(a) == data).all()
    assert (np.load(f"/dev/shm/{name}") == data).all(), "laid out as .npy: numpy.load reads it"
    u = shmkit.create_from(None, [1.5, 2.5])
    assert u.name.startswith("shmkit-") and np.asarray(u).tolist() == [1.5, 2.5]
    with pytest.raises(shmkit.AlreadyExists) as e:
        shmkit.create_from(name, data)
    assert isinstance(e.value, FileExistsError)
    a.close()
    u.close()


def test_sizes_and_names_are_checked() -> None:
    with shmkit.create_unique(0, "f8") as empty:
        assert np.asarray(empty).shape == (0,)
    with shmkit.create_unique((), "f8") as scalar:
        assert np.asarray(scalar).shape == ()
    with pytest.raises(shmkit.InvalidArgument):
        shmkit.create_unique((2**40, 2**40), "f8")
    with pytest.raises(shmkit.NoSpace):
        shmkit.create_unique(2**50, "u1")
    for bad in ["", "a/b", "x" * 300]:
        with pytest.raises(shmkit.InvalidName):
            shmkit.create(bad, 4)
    with pytest.raises(shmkit.NotFound) as e:
        shmkit.open(unique("never"))
    assert isinstance(e.value, FileNotFoundError)


def test_claims_conflict_within_a_process(name: str) -> None:
    a = shmkit.create(name, (8, 2), "f8")
    b = shmkit.open(name)
    with a.rows_mut(0, 4) as top:
        assert top.shape == (4, 2) and top.flags.writeable
        top[:] = 1
        with pytest.raises(shmkit.Busy):
            with b.rows(2, 6):
                pass
        with pytest.raises(shmkit.Busy):
            with a.view():
                pass
        with b.rows_mut(4, 8) as bottom:
            bottom[:] = 2
        with a.rows(4, 8) as r1, b.rows(4, 8) as r2:
            assert not r1.flags.writeable and (r1 == r2).all(), "readers share"
    with b.view_mut() as whole:
        assert whole.sum() == 4 * 2 + 4 * 2 * 2
    claim = a.rows_mut(0, 1)
    claim.__enter__()
    with pytest.raises(ValueError):
        claim.__enter__()
    claim.release()
    # A claim entered and never left goes with its object.
    left = a.rows_mut(0, 8)
    left.__enter__()
    with pytest.raises(shmkit.Busy):
        with b.rows(0, 1):
            pass
    del left
    with b.rows_mut(0, 8):
        pass
    with pytest.raises(shmkit.InvalidArgument):
        with a.rows(6, 9):
            pass
    with pytest.raises(shmkit.InvalidArgument):
        with a.rows(5, 2):
            pass
    a.close()


def test_a_view_kept_past_its_block_is_memory_but_not_claimed(name: str) -> None:
    a = shmkit.create(name, (4, 4), "i4")
    with a.rows_mut(0, 2) as kept:
        pass
    with a.rows_mut(0, 4) as again:  # the claim ended with the block
        again[:] = 5
    assert (kept == 5).all()
    a.close()


def test_fortran_order_rows_are_views_of_the_right_elements(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "f.npy")
    np.save(path, np.asfortranarray(np.arange(12, dtype=np.float64).reshape(4, 3)))
    a = shmkit.open_file(path)
    with a.rows_mut(1, 3) as middle:
        assert middle.tolist() == [[3, 4, 5], [6, 7, 8]]
        middle *= 10
    a.flush()
    assert np.load(path)[1:3].tolist() == [[30, 40, 50], [60, 70, 80]]
    a.close()
    assert os.path.exists(path), "closing never removes a file"


def test_a_file_backed_array_is_numpy_loadable(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "a.npy")
    a = shmkit.create_file(path, (2, 3), "u2")
    np.asarray(a)[:] = 9
    a.flush()
    assert np.load(path).tolist() == [[9] * 3] * 2
    assert pickle.loads(pickle.dumps(a)).name == path, "pickles to its path"
    a.close()
    with pytest.raises(shmkit.AlreadyExists):
        shmkit.create_file(path, 2)


def test_the_owner_removes_the_name_when_collected(name: str) -> None:
    a = shmkit.create(name, 4)
    assert name in dev_shm()
    del a
    gc.collect()
    assert name not in dev_shm()


def test_the_owner_removes_names_at_interpreter_exit_and_keeps_persisted_ones() -> None:
    gone, cycle, kept = unique("exit"), unique("cycle"), unique("kept")
    run_python(
        f"""
        import shmkit
        a = shmkit.create({gone!r}, 4)          # a module global, never closed
        class Holder: pass
        h = Holder(); h.me = h; h.a = shmkit.create({cycle!r}, 4)  # in a cycle
        p = shmkit.create({kept!r}, 4); p.persist()
        """
    )
    left = dev_shm()
    assert gone not in left and cycle not in left, "atexit removed the owners' names"
    assert kept in left, "persist() keeps a segment past its owner"
    assert shmkit.inspect(kept)["persistent"] is True
    shmkit.remove(kept)
    assert kept not in dev_shm()


def test_openers_and_forked_children_never_remove(name: str) -> None:
    a = shmkit.create(name, 4, "i8")
    # An opener that exits normally, and one SIGKILLed.
    run_python(f"import shmkit, numpy; b = shmkit.open({name!r}); numpy.asarray(b)[0] = 1; b.close()")
    killed = run_python(f"import shmkit, os, signal; b = shmkit.open({name!r}); os.kill(os.getpid(), 9)", check=False)
    assert killed.returncode == -9
    assert name in dev_shm()
    # A forked child of the owner is no owner: close() and `with` leave
    # the name, as does its exit (atexit); remove_name() says why not.
    out = run_python(
        f"""
        import os, sys, shmkit
        a = shmkit.create({name + '-f'!r}, 4)
        with shmkit.create({name + '-w'!r}, 4) as w:
            pid = os.fork()
            if pid == 0:
                print("child: owner", a.is_owner, w.is_owner, flush=True)
                try:
                    a.remove_name()
                except shmkit.Inherited:
                    print("child: remove_name Inherited", flush=True)
                a.close()
                w.__exit__(None, None, None)
                sys.exit(0)               # atexit runs in the child, too
            os.waitpid(pid, 0)
            import pathlib
            print("after child:", pathlib.Path("/dev/shm/{name}-f").exists(), pathlib.Path("/dev/shm/{name}-w").exists())
        """
    ).stdout
    assert "child: owner False False" in out and "child: remove_name Inherited" in out, out
    assert "after child: True True" in out, out
    assert name + "-f" not in dev_shm(), "its creator removed it at exit"
    assert np.asarray(a)[0] == 1
    a.close()


def test_a_handle_pickles_to_its_name_not_its_data(name: str) -> None:
    a = shmkit.create(name, 100_000, "f8")
    blob = pickle.dumps(a)
    assert len(blob) < 200 and name.encode() in blob
    b = pickle.loads(blob)
    assert b.name == name and not b.is_owner
    a.close()
