"""The Gemini fake, driven by the real google-genai SDK over HTTP."""

import io
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from google import genai
from google.genai import errors, types

from tests.fakes.gemini import ROUTES, GeminiFake

API_KEY = "test-key-that-must-never-be-logged-4f1c"
POLICY = (
    "Vacation policy: every employee gets 25 days of paid leave per year.\n\n"
    "The office opens at nine and closes at six. Parking is free for visitors."
)


@pytest.fixture(scope="module")
def server():
    with GeminiFake(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def fake(server):
    server.reset()
    return server


@pytest.fixture
def client(fake):
    return fake.client()


def file_search(*stores, **options):
    return types.GenerateContentConfig(
        tools=[
            types.Tool(
                file_search=types.FileSearch(
                    file_search_store_names=list(stores), **options
                )
            )
        ],
        max_output_tokens=64,
        temperature=0.2,
    )


def upload(client, store, data=POLICY.encode(), **config):
    config = {"display_name": "policy.txt", "mime_type": "text/plain", **config}
    return client.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store, file=io.BytesIO(data), config=config
    )


def wait_done(client, operation, limit=10):
    polls = 0
    while not operation.done:
        assert polls < limit, "the operation never finished"
        operation = client.operations.get(operation)
        polls += 1
    return operation, polls


def raw(fake, method, path, headers=None, data=None):
    """A plain HTTP request, for what the SDK cannot send (no key, raw chunks)."""
    request = urllib.request.Request(
        fake.base_url + path, data=data, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_store_create_get_list_and_delete(fake, client):
    names = [
        client.file_search_stores.create(config={"display_name": f"Store {i}"}).name
        for i in range(3)
    ]

    assert all(name.startswith("fileSearchStores/store-") for name in names)
    store = client.file_search_stores.get(name=names[1])
    assert store.display_name == "Store 1"
    assert store.create_time is not None

    listed = list(client.file_search_stores.list(config={"page_size": 2}))
    assert [s.name for s in listed] == names
    pages = fake.calls("GET", route="stores.list")
    assert [c["query"].get("pageToken") is None for c in pages] == [True, False]
    assert pages[0]["query"]["pageSize"] == "2"

    client.file_search_stores.delete(name=names[0])
    assert fake.store_names() == names[1:]
    with pytest.raises(errors.ClientError) as caught:
        client.file_search_stores.get(name=names[0])
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")


def test_upload_poll_search_and_delete(fake, client, tmp_path):
    store = client.file_search_stores.create(config={"display_name": "Handbook"})
    path = tmp_path / "policy.txt"
    path.write_text(POLICY)

    operation = client.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store.name,
        file=path,
        config={
            "display_name": "Vacation policy",
            "mime_type": "text/plain",
            "custom_metadata": [
                {"key": "document_id", "numeric_value": 42},
                {"key": "source", "string_value": "handbook"},
            ],
        },
    )

    assert operation.name.startswith(f"{store.name}/upload/operations/")
    assert not operation.done  # Gemini leaves `done` out while running
    operation, polls = wait_done(client, operation)
    assert polls == 1
    document_name = operation.response.document_name
    assert document_name.startswith(f"{store.name}/documents/vacation-policy-")
    assert operation.response.parent == store.name
    stored = fake.document(document_name)
    assert stored["custom_metadata"] == [
        {"key": "document_id", "numericValue": 42},
        {"key": "source", "stringValue": "handbook"},
    ]
    assert (stored["display_name"], stored["mime_type"]) == (
        "Vacation policy",
        "text/plain",
    )
    assert stored["size_bytes"] == len(POLICY.encode())
    assert fake.uploaded_bytes(document_name) == POLICY.encode()
    assert stored["state"] == "STATE_ACTIVE"

    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents="How many days of paid vacation leave?",
        config=file_search(store.name),
    )

    candidate = response.candidates[0]
    context = candidate.grounding_metadata.grounding_chunks[0].retrieved_context
    assert context.title == "Vacation policy"
    assert "25 days of paid leave" in context.text
    assert "Parking" not in context.text  # only the matching paragraph
    assert context.file_search_store == store.name
    metadata = {item.key: item for item in context.custom_metadata}
    assert metadata["document_id"].numeric_value == 42
    assert metadata["source"].string_value == "handbook"
    assert "25 days" in response.text
    support = candidate.grounding_metadata.grounding_supports[0]
    assert support.grounding_chunk_indices == [0]
    assert fake.searches[-1]["temperature"] == 0.2
    assert fake.searches[-1]["max_output_tokens"] == 64

    document = client.file_search_stores.documents.get(name=document_name)
    assert document.state == types.DocumentState.STATE_ACTIVE
    documents = list(client.file_search_stores.documents.list(parent=store.name))
    assert [d.name for d in documents] == [document_name]
    assert documents[0].size_bytes == len(POLICY.encode())
    assert documents[0].custom_metadata[0].numeric_value == 42

    client.file_search_stores.documents.delete(
        name=document_name, config={"force": True}
    )
    client.file_search_stores.delete(name=store.name, config={"force": True})
    assert fake.documents() == []
    assert fake.store_names() == []
    deletes = fake.calls("DELETE")
    assert [c["route"] for c in deletes] == ["documents.delete", "stores.delete"]
    assert all(c["query"] == {"force": "True"} for c in deletes)


def test_upload_start_and_chunks_follow_the_resumable_protocol(fake, client):
    store = client.file_search_stores.create(config={"display_name": "s"})

    upload(client, store.name, b"hello world")

    start, chunk = fake.calls(path_contains="/upload/v1beta/")
    assert start["route"] == "upload.start"
    assert start["headers"]["x-goog-upload-protocol"] == "resumable"
    assert start["headers"]["x-goog-upload-command"] == "start"
    assert start["headers"]["x-goog-upload-header-content-length"] == "11"
    assert start["json"]["displayName"] == "policy.txt"
    assert chunk["route"] == "upload.chunk"
    assert chunk["headers"]["x-goog-upload-command"] == "upload, finalize"
    assert chunk["headers"]["x-goog-upload-offset"] == "0"
    assert chunk["size"] == 11
    assert chunk["json"] is None  # bytes are never logged
    assert not chunk["has_api_key"]  # the SDK sends no key with chunks


def test_raw_chunks_must_arrive_in_order(fake):
    store = fake.add_store("raw")

    def start_upload() -> str:
        status, headers, _ = raw(
            fake,
            "POST",
            f"/upload/v1beta/{store}:uploadToFileSearchStore",
            {
                "x-goog-api-key": API_KEY,
                "Content-Type": "application/json",
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
                "X-Goog-Upload-Header-Content-Length": "10",
            },
            b'{"displayName": "two parts", "mimeType": "text/plain"}',
        )
        assert status == 200
        return headers["X-Goog-Upload-URL"].removeprefix(fake.base_url)

    def chunk(command, offset, data):
        return raw(
            fake,
            "POST",
            url,
            {"X-Goog-Upload-Command": command, "X-Goog-Upload-Offset": str(offset)},
            data,
        )

    url = start_upload()
    status, headers, _ = chunk("upload", 0, b"hello")
    assert (status, headers["X-Goog-Upload-Status"]) == (200, "active")
    status, headers, body = chunk("upload, finalize", 3, b"world")
    assert (status, headers["X-Goog-Upload-Status"]) == (400, "final")
    assert json.loads(body)["error"]["status"] == "INVALID_ARGUMENT"

    url = start_upload()
    assert chunk("upload", 0, b"hello")[0] == 200
    status, headers, body = chunk("upload, finalize", 5, b"world")
    assert (status, headers["X-Goog-Upload-Status"]) == (200, "final")
    document = json.loads(body)
    assert document["name"].startswith(f"{store}/upload/operations/")
    assert [d["text"] for d in fake.documents(store)] == ["helloworld"]


def test_operation_finishes_after_the_configured_number_of_polls(fake, client):
    store = fake.add_store("polls")

    fake.operation_polls_until_done = 3
    _, polls = wait_done(client, upload(client, store))
    assert polls == 3

    fake.operation_polls_until_done = 0
    assert upload(client, store).done


def test_operation_that_never_finishes(fake, client):
    store = fake.add_store("stuck")
    fake.operation_polls_until_done = None
    operation = upload(client, store)

    for _ in range(5):
        operation = client.operations.get(operation)
        assert not operation.done
    name = operation.name
    document = fake.documents(store)[0]["name"]
    assert fake.document(document)["state"] == "STATE_PENDING"
    response = client.models.generate_content(
        model="gemini-2.5-flash", contents="vacation", config=file_search(store)
    )
    assert response.candidates[0].grounding_metadata is None  # not indexed yet

    fake.finish_operations()
    assert client.operations.get(operation).response.document_name == document
    assert fake.operation(name)["done"] is True


def test_operation_error(fake, client):
    store = fake.add_store("broken")
    fake.operation_error = {"code": 13, "message": "Failed to process the document."}

    operation, _ = wait_done(client, upload(client, store))

    assert operation.error == {"code": 13, "message": "Failed to process the document."}
    assert operation.response is None
    assert fake.documents(store)[0]["state"] == "STATE_FAILED"


def test_upload_to_a_missing_store(fake, client):
    with pytest.raises(errors.ClientError) as caught:
        upload(client, "fileSearchStores/nope-123456789012")
    assert caught.value.code == 404


def test_search_ranks_by_word_overlap_and_cuts_the_answer(fake, client):
    store = fake.add_store("ranked")
    fake.add_document(store, "Parking is free for visitors.", display_name="Parking")
    fake.add_document(
        store,
        "Visitors park in lot B. Visitors parking permits are free of charge.",
        display_name="Visitors",
        custom_metadata=[{"key": "document_id", "string_value": "7"}],
    )
    fake.add_document(store, "Nothing related here.", display_name="Other")

    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents="Is visitors parking free?",
        config=types.GenerateContentConfig(
            tools=[
                types.Tool(
                    file_search=types.FileSearch(file_search_store_names=[store])
                )
            ],
            max_output_tokens=5,
        ),
    )

    chunks = response.candidates[0].grounding_metadata.grounding_chunks
    titles = [c.retrieved_context.title for c in chunks]
    assert titles == ["Visitors", "Parking"]
    assert chunks[0].retrieved_context.custom_metadata[0].string_value == "7"
    assert response.text == "From Visitors: Visitors park in"
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


def test_search_top_k_and_metadata_filter(fake, client):
    store = fake.add_store("filtered")
    for number in (1, 2, 3):
        fake.add_document(
            store,
            f"Report number {number} about budgets.",
            display_name=f"r{number}",
            custom_metadata=[{"key": "document_id", "numeric_value": number}],
        )

    def titles(**options):
        response = client.models.generate_content(
            model="gemini-2.5-flash",
            contents="budgets report",
            config=file_search(store, **options),
        )
        chunks = response.candidates[0].grounding_metadata.grounding_chunks
        return [c.retrieved_context.title for c in chunks]

    assert titles(top_k=2) == ["r1", "r2"]
    assert titles(metadata_filter="document_id = 2") == ["r2"]
    assert titles(metadata_filter="document_id >= 2 AND document_id != 3") == ["r2"]
    assert (
        fake.searches[-1]["metadata_filter"] == "document_id >= 2 AND document_id != 3"
    )
    with pytest.raises(errors.ClientError) as caught:
        titles(metadata_filter="document_id ~~ 2")
    assert caught.value.code == 400


def test_grounding_supports_are_utf8_byte_offsets_into_the_answer(fake, client):
    store = fake.add_store("accents")
    fake.add_document(store, "Le café ouvre à huit heures.", display_name="Café")
    fake.add_document(store, "Le café ferme à dix-huit heures.", display_name="Soir")

    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents="café heures",
        config=file_search(store),
    )

    text = response.text
    assert text == (
        "From Café: Le café ouvre à huit heures. "
        "From Soir: Le café ferme à dix-huit heures."
    )
    first, second = response.candidates[0].grounding_metadata.grounding_supports
    assert first.segment.start_index is None  # 0 is left out of proto3 JSON
    assert (first.grounding_chunk_indices, second.grounding_chunk_indices) == (
        [0],
        [1],
    )
    encoded = text.encode()
    second_at = text.index("From Soir")
    assert second.segment.start_index == len(text[:second_at].encode()) != second_at
    assert encoded[: first.segment.end_index].decode() == text[: second_at - 1]
    start, end = second.segment.start_index, second.segment.end_index
    assert encoded[start:end].decode() == "From Soir: Le café ferme à dix-huit heures."
    assert second.segment.text == encoded[start:end].decode()
    assert end == len(encoded) != len(text)


def test_pdf_chunks_carry_their_page_number(fake, client):
    from tests.factories import make_pdf

    store = client.file_search_stores.create(config={"display_name": "pdfs"})
    pdf = make_pdf(["Harbours and lighthouses.", "Lock keepers raise canal barges."])
    operation = upload(
        client, store.name, pdf, display_name="guide.pdf", mime_type="application/pdf"
    )
    wait_done(client, operation)
    fake.add_document(store.name, "Barges on a plain text page.", display_name="t")

    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents="canal barges",
        config=file_search(store.name),
    )

    chunks = response.candidates[0].grounding_metadata.grounding_chunks
    pages = {c.retrieved_context.title: c.retrieved_context.page_number for c in chunks}
    assert pages == {"guide.pdf": 2, "t": None}
    assert "Lock keepers" in chunks[0].retrieved_context.text


def test_search_of_an_unknown_store(fake, client):
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(
            model="gemini-2.5-flash",
            contents="anything",
            config=file_search("fileSearchStores/missing-000000000000"),
        )
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")

    fake.missing_status = 403
    with pytest.raises(errors.ClientError) as caught:
        client.file_search_stores.get(name="fileSearchStores/missing-000000000000")
    assert (caught.value.code, caught.value.status) == (403, "PERMISSION_DENIED")


def test_non_empty_store_and_document_need_force(fake, client):
    store = fake.add_store("full")
    document = fake.add_document(store, "Some text.")

    with pytest.raises(errors.ClientError) as caught:
        client.file_search_stores.delete(name=store)
    assert (caught.value.code, caught.value.status) == (400, "FAILED_PRECONDITION")
    assert caught.value.message == "Cannot delete non-empty FileSearchStore"

    with pytest.raises(errors.ClientError) as caught:
        client.file_search_stores.documents.delete(name=document)
    assert (caught.value.code, caught.value.status) == (400, "FAILED_PRECONDITION")
    assert caught.value.message == "Cannot delete non-empty Document"

    client.file_search_stores.delete(name=store, config={"force": True})
    assert fake.store_names() == []


def test_server_errors_surface_as_server_error(fake, client):
    fake.fail("generateContent", 500, times=None)
    store = fake.add_store("errors")

    for _ in range(2):
        with pytest.raises(errors.ServerError) as caught:
            client.models.generate_content(
                model="gemini-2.5-flash", contents="q", config=file_search(store)
            )
        assert (caught.value.code, caught.value.status) == (500, "INTERNAL")
    assert len(fake.calls(route="generateContent")) == 2  # retries were off

    fake.fail("stores.create", 503)
    with pytest.raises(errors.ServerError) as caught:
        client.file_search_stores.create(config={"display_name": "x"})
    assert (caught.value.code, caught.value.status) == (503, "UNAVAILABLE")
    assert client.file_search_stores.create(config={"display_name": "x"}).name


def test_sdk_retry_gets_past_two_503s(fake):
    client = fake.client(attempts=3)
    fault = fake.fail("stores.create", 503, times=2)

    store = client.file_search_stores.create(config={"display_name": "retried"})

    assert store.name in fake.store_names()
    assert [c["status"] for c in fake.calls(route="stores.create")] == [503, 503, 200]
    assert fault.remaining == 0


def test_sdk_gives_up_after_its_attempts(fake):
    client = fake.client(attempts=2)
    fake.fail("/models/", 503, times=None)

    with pytest.raises(errors.ServerError):
        client.models.generate_content(model="gemini-2.5-flash", contents="q")
    assert len(fake.calls(route="generateContent")) == 2


def test_rate_limit_with_retry_after(fake, client):
    fake.rate_limit("stores.list", retry_after=2, times=1)

    with pytest.raises(errors.ClientError) as caught:
        client.file_search_stores.list()

    error = caught.value
    assert (error.code, error.status) == (429, "RESOURCE_EXHAUSTED")
    assert error.response.headers["retry-after"] == "2"
    assert error.details["error"]["details"][0]["retryDelay"] == "2s"
    assert list(client.file_search_stores.list()) == []


def test_failed_upload_chunk_raises_at_once(fake, client):
    store = fake.add_store("chunks")
    fake.fail("upload.chunk", 503)
    started = time.monotonic()

    with pytest.raises(errors.ServerError):
        upload(client, store)

    assert time.monotonic() - started < 1  # no 1-2-4 s chunk resend loop
    assert fake.documents(store) == []


def test_delay_and_client_timeout(fake, client):
    fake.delay("generateContent", 0.3, times=1)
    started = time.monotonic()
    client.models.generate_content(model="gemini-2.5-flash", contents="slow")
    assert time.monotonic() - started >= 0.3

    fake.delay("stores.get", 1.0, times=1)
    impatient = fake.client(timeout=200)  # milliseconds
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        impatient.file_search_stores.get(name="fileSearchStores/any-000000000000")
    assert "Timeout" in type(caught.value).__name__
    assert time.monotonic() - started < 0.9


def test_delayed_requests_are_answered_in_parallel(fake, client):
    fake.delay("generateContent", 0.3)
    started = time.monotonic()

    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(
            pool.map(
                lambda i: client.models.generate_content(
                    model="gemini-2.5-flash", contents=f"question {i}"
                ),
                range(5),
            )
        )

    assert len(answers) == 5
    assert 0.3 <= time.monotonic() - started < 0.9


def test_missing_and_wrong_api_keys(fake):
    status, _, body = raw(fake, "GET", "/v1beta/fileSearchStores")
    assert status == 403
    assert json.loads(body)["error"]["status"] == "PERMISSION_DENIED"
    assert json.loads(body)["error"]["code"] == 403

    wrong = genai.Client(
        api_key="wrong-key", http_options=fake.http_options(attempts=1)
    )
    with pytest.raises(errors.ClientError) as caught:
        wrong.file_search_stores.list()
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert "API key not valid" in caught.value.message


def test_sdk_default_api_version_is_not_v1beta(fake):
    client = genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(
            base_url=fake.base_url,
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )

    with pytest.raises(errors.ClientError) as caught:
        client.file_search_stores.create(config={"display_name": "x"})

    assert caught.value.code == 404
    assert fake.calls()[-1]["path"] == "/v1/fileSearchStores"


def test_request_log_never_holds_the_api_key(fake, client):
    store = client.file_search_stores.create(config={"display_name": "secret"})
    wait_done(client, upload(client, store.name))
    client.models.generate_content(
        model="gemini-2.5-flash", contents="vacation", config=file_search(store.name)
    )
    raw(fake, "GET", f"/v1beta/fileSearchStores?key={API_KEY}")

    log = fake.requests
    assert {entry["route"] for entry in log} <= set(ROUTES)
    assert API_KEY not in json.dumps(log)
    assert all(
        entry["has_api_key"] for entry in log if entry["route"] != "upload.chunk"
    )
    assert log[-1]["query"] == {}  # `key=` is dropped
    assert log[-1]["status"] == 200


def test_reset_forgets_state_faults_and_settings(fake, client):
    store = fake.add_store("gone")
    fake.fail("stores.list", 500, times=None)
    fake.operation_polls_until_done = None

    fake.reset()

    assert fake.store_names() == [] and fake.requests == []
    assert list(client.file_search_stores.list()) == []
    assert fake.operation_polls_until_done == 1
    assert store not in fake.store_names()


def test_stop_closes_keep_alive_connections():
    with GeminiFake() as fake:
        client = fake.client()
        client.file_search_stores.create(config={"display_name": "x"})
    with pytest.raises(Exception):  # noqa: B017 - any transport error will do
        client.file_search_stores.list()
