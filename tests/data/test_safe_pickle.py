"""The refs-pickle unpickler admits plain data only: code-running and class-instance pickles are refused, a truncated one is named."""

import os
import pickle

import pytest

from cptbench.data.safe_pickle import UnsafePickleError, load_plain_pickle


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_plain_data_loads(tmp_path):
    data = [{"ref_id": 1, "sentences": [{"sent": "the man", "tokens": ["the", "man"]}], "box": (1.0, 2.0), "x": None}]
    p = tmp_path / "refs(unc).p"
    p.write_bytes(pickle.dumps(data, protocol=2))
    assert load_plain_pickle(p) == data


def test_code_running_pickle_is_refused(tmp_path):
    p = tmp_path / "refs(unc).p"
    p.write_bytes(pickle.dumps([_RunsCode()]))
    with pytest.raises(UnsafePickleError) as err:
        load_plain_pickle(p)
    msg = str(err.value)
    assert str(p) in msg and "system" in msg


def test_class_instance_is_refused(tmp_path):
    import collections

    p = tmp_path / "x.p"
    p.write_bytes(pickle.dumps(collections.OrderedDict(a=1)))
    with pytest.raises(UnsafePickleError):
        load_plain_pickle(p)


def test_truncated_pickle_names_file(tmp_path):
    p = tmp_path / "refs(unc).p"
    p.write_bytes(pickle.dumps([1, 2, 3])[:-3])
    with pytest.raises(UnsafePickleError, match="refs"):
        load_plain_pickle(p)
