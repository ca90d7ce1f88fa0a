"""The ``Manager`` seed, with shmkit: pool workers fill a shared dict and list.

No server process and no pickling per operation: each worker writes the
segments directly, so the dict takes millions of operations a second
where a Manager takes tens of thousands; a worker killed mid-write never
corrupts them. Keys and values have numpy dtypes.
"""

from multiprocessing import Pool

import shmkit


def worker(shared_dict: shmkit.Dict, shared_list: shmkit.List, key: int, value: int) -> int:
    shared_dict[key] = value  # visible to every process at once
    shared_list.append(f"processed_{key}")  # lock-free append
    return key


def main() -> None:
    with shmkit.Dict.create_unique("i8", "i8", capacity=64) as shared_dict, \
            shmkit.List.create_unique("U16", capacity=64) as shared_list:
        with Pool(processes=4) as pool:
            results = [pool.apply_async(worker, (shared_dict, shared_list, i, i * 2)) for i in range(10)]
            [r.get() for r in results]
        print(f"Dict: {dict(sorted(shared_dict.items()))}")
        print(f"List: {sorted(shared_list)}")


if __name__ == "__main__":
    main()
