"""LocusClient's jobs against the real app and its runner thread: submit, follow, wait with a bar, cancel,
upload an import; failures and bad input as typed exceptions."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from locus_registry_client import Forbidden, InvalidInput, JobFailed, JobTimeout, LocusClient, NotFound
from registry import services
from registry.services import Context
from tests.api.conftest import make_container
from tests.jobs.conftest import Recorder, recorder

__all__ = ["recorder"]
from tests.jobs.data import write_normalised


@pytest.fixture
def admin_lc(ctx: Context, tmp_path: Path) -> Iterator[LocusClient]:
    container = make_container(ctx, job_dir=tmp_path / "jobs", job_lease_s=5)
    key = services.create_api_key(ctx, "client-admin", ["admin"]).key
    with TestClient(create_app(container=container)) as http, LocusClient(http=http, api_key=key) as lc:
        yield lc


def test_submit_wait_list_cancel(
    admin_lc: LocusClient, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    job = admin_lc.submit_job("count", {"n": 4})
    assert job.state == "queued" and job.kind == "count"
    done = admin_lc.wait_job(job.id, poll=0.05)
    assert done.state == "succeeded" and done.result == {"counted": 4, "attempt": 1}
    assert "count" in capsys.readouterr().err  # the progress bar
    assert admin_lc.get_job(job.id).done == 4
    assert [j.id for j in admin_lc.list_jobs(state=["succeeded"], kind=["count"]).items] == [job.id]
    assert {k.kind for k in admin_lc.job_kinds()} >= {"count", "import"}

    failing = admin_lc.submit_job("count", {"n": 1, "fail": "disk full"})
    with pytest.raises(JobFailed) as err:
        admin_lc.wait_job(failing.id, poll=0.05, progress=False)
    assert err.value.job.error == "ValueError: disk full"
    assert admin_lc.wait_job(failing.id, raise_on_failure=False, progress=False).state == "failed"

    slow = admin_lc.submit_job("count", {"n": 10_000, "pause": 0.01})
    with pytest.raises(JobTimeout):
        admin_lc.wait_job(slow.id, poll=0.05, timeout=0.5, progress=False)
    assert admin_lc.cancel_job(slow.id).cancel_requested
    with pytest.raises(JobFailed) as stopped:
        admin_lc.wait_job(slow.id, poll=0.05, progress=False)
    assert stopped.value.job.state == "cancelled"

    with pytest.raises(InvalidInput) as bad:
        admin_lc.submit_job("count", {"n": "lots"})
    assert "params.n" in bad.value.detail
    with pytest.raises(NotFound):
        admin_lc.get_job("00000000-0000-0000-0000-000000000000")


def test_import_job_upload(admin_lc: LocusClient, tmp_path: Path) -> None:
    folder = write_normalised(tmp_path / "syn", models=3, questions=10, seed=11)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in folder.iterdir():
            z.write(f, f"syn/{f.name}")
    job = admin_lc.import_job(buf.getvalue(), format="normalised", filename="syn.zip", name="client")
    done = admin_lc.wait_job(job.id, poll=0.05, progress=False)
    assert done.result is not None and done.result["models_created"] == 3 and done.result["evaluations"] == 30
    assert admin_lc.list_models().total == 3
    csv = tmp_path / "wide.csv"
    csv.write_text("model,q1,q2\nm-a,1,0\nm-b,0,1\n")
    wide = admin_lc.wait_job(admin_lc.import_job(csv, format="wide-csv", name="w").id, progress=False)
    assert wide.result is not None and wide.result["models_created"] == 2


def test_writer_cannot_submit_admin_kinds(lc: LocusClient) -> None:
    with pytest.raises(Forbidden) as err:
        lc.submit_job("import", {"path": "x"})
    assert "admin" in err.value.detail
