"""Chapter 11's cached experiment E7 (LayerNorm removal) is complete and reproduces."""


from cache_compare import assert_reproduces

from normcourse import experiments as ex
from normcourse.data import cached





def test_e7_is_fully_cached():
    cache = ex.read_cache("E7")
    assert cache["format_version"] == ex.FORMAT_VERSION
    keys = {ex.spec_key(s) for s in ex.EXPERIMENTS["E7"].specs()}
    assert set(cache["runs"]) == keys, "re-run: python -m normcourse experiment E7 --workers 2"
    for entry in cache["runs"].values():
        assert entry["corpus_sha256"] == cached("python_docs").sha256
        r = entry["result"]
        assert len(r["loss"]) == entry["spec"]["train"]["steps"]
        assert len(r["gradual"]["ft_loss"]) == len(r["ft_loss_kept"]) == r["ft_steps"]


def test_a_slice_of_e7_reproduces():
    runs = ex.read_cache("E7")["runs"]
    key, entry = next((k, e) for k, e in runs.items() if e["spec"]["train"]["seed"] == 0)
    assert key == ex.spec_key(entry["spec"])
    assert_reproduces(entry, ex.run_one(entry["spec"]))
