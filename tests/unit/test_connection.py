import json
import stat

import pytest

from fedsyft.connection import ConnectionFileError, SiteCredentials, read_sites_file, write_sites_file

SITE = SiteCredentials("MNIST Part 1", "http://127.0.0.1:54879", "r@fedsyft.org", "s3cret")


def test_round_trip_and_owner_only_mode(tmp_path):
    path = write_sites_file(tmp_path / "sites.json", [SITE])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_sites_file(path) == [SITE]
    assert json.loads(path.read_text()) == {"sites": [{"name": "MNIST Part 1", "url": "http://127.0.0.1:54879",
                                                       "email": "r@fedsyft.org", "password": "s3cret"}]}
    assert "s3cret" not in repr(SITE)


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("{not json", "not valid JSON"),
    ('{"sites": []}', "non-empty list"),
    ('[1, 2]', "non-empty list"),
    ('{"sites": [{"name": "a", "url": "http://h:1"}]}', "needs non-empty strings"),
    ('{"sites": [{"name": "a", "url": "h:1", "email": "e", "password": "p"}]}', "is not http"),
    ('{"sites": [{"name": "a", "url": "http://h", "email": "e", "password": "p"}]}', "is not http"),
    ('{"sites": [{"name": "a", "url": "http://h:1", "email": "e", "password": "p"},'
     ' {"name": "a", "url": "http://h:2", "email": "e", "password": "p"}]}', "unique"),
])
def test_malformed_files_get_a_one_line_reason(tmp_path, content, message):
    path = tmp_path / "sites.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConnectionFileError, match=message) as info:
        read_sites_file(path)
    assert "\n" not in str(info.value)
