"""The IMAP source (searcher/sources/imap.py) against a real IMAP server on loopback: pymap's
in-memory backend, started by the tests, filled through IMAP APPEND. Listing, versions from
UIDVALIDITY and UIDs, deletions, a changed UIDVALIDITY, messages and their attachments read
through the e-mail reader, STARTTLS and imaps:// (TLS in front of the server) with a
certificate made here, and the password kept out of URLs, repr and errors."""

from __future__ import annotations

import datetime
import imaplib
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from searcher.readers.documents import Document, Skipped
from searcher.readers.formats import READERS
from searcher.readers.options import LoadOptions
from searcher.sources import Item, open_source
from searcher.sources.imap import Mailbox, MailboxError, MessageGone, imap_utf7

from .source_contract import SourceContract, listing as contract_listing

pytest.importorskip("pymap")

USER, PASSWORD = "ann", "s3cret-Horse-battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pymap_command() -> list[str]:
    script = Path(sys.executable).with_name("pymap")
    if script.exists():
        return [str(script)]
    found = shutil.which("pymap")
    return [found] if found else [sys.executable, "-c", "from pymap.main import main; main()"]


def wait_for(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            process.stdout.seek(0)
            raise RuntimeError(f"pymap exited: {process.stdout.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("pymap did not start listening in 60 s")


def start_pymap(tmp: Path, *tls: str) -> tuple[subprocess.Popen, int]:
    """pymap's in-memory server on a free loopback port (tried again on another port, twice,
    should another process take the port between its choice and pymap's bind)."""
    for attempt in range(3):
        port = free_port()
        command = [*pymap_command(), "--host", "127.0.0.1", "--port", str(port), *(tls or ["--no-tls"]),
                   "dict", "--demo-user", USER, "--demo-password", PASSWORD]
        log = open(tmp / f"pymap-{port}.log", "w+")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        process.stdout = log
        try:
            wait_for(port, process)
            return process, port
        except RuntimeError:
            stop(process)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("imap")
    process, port = start_pymap(tmp)
    yield port
    stop(process)


def admin(port: int) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    client.login(USER, PASSWORD)
    return client


def message(subject: str, body: str, *, html: str | None = None, attachments=(), when=None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Bob <bob@example.com>"
    msg["To"] = "ann@example.com"
    msg["Subject"] = subject
    msg["Date"] = when or "Mon, 01 Jan 2024 10:00:00 +0000"
    msg["Message-ID"] = f"<{abs(hash(subject))}@example.com>"
    msg.set_content(body)
    if html:
        msg.add_alternative(html, subtype="html")
    for name, data, maintype, subtype in attachments:
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def fresh_mailbox(port: int, name: str, messages: list[bytes]) -> None:
    client = admin(port)
    client.delete(f'"{name}"')  # from an earlier test: a fresh one
    assert client.create(f'"{name}"')[0] == "OK"
    for data in messages:
        assert client.append(f'"{name}"', None, None, data)[0] == "OK"
    client.logout()


def url(port: int, mailbox: str, scheme: str = "imap") -> str:
    return f"{scheme}://{USER}@127.0.0.1:{port}/{mailbox}"


def listing(source: Mailbox) -> tuple[dict[str, Item], list[Skipped]]:
    items = list(source.items())
    return {i.key: i for i in items if isinstance(i, Item)}, [i for i in items if isinstance(i, Skipped)]


def documents(item: Item, data: bytes) -> list[Document | Skipped]:
    """What the wiring does with read(item): the reader of `.eml` files."""
    return list(READERS[Path(item.name).suffix](Path(item.name), data, LoadOptions(workers=0)))


GARDEN = [
    message("Roses", "Prune the roses in late winter, above an outward-facing bud."),
    message("Compost", "Plain text version.", html="<html><body><nav><a href='/'>Home</a></nav>"
            "<p>Turn the compost heap every few weeks.</p></body></html>",
            attachments=[("plan.txt", b"Beds one to four get mulch in autumn.", "text", "plain"),
                         ("list.csv", b"id,text\n1,Plant the tulips in October.\n", "text", "csv"),
                         ("photo.png", b"\x89PNG....", "image", "png")]),
]


def test_messages_are_listed_with_versions_from_uidvalidity_and_uids(server, monkeypatch):
    monkeypatch.setenv("SEARCHER_IMAP_PASSWORD", PASSWORD)
    fresh_mailbox(server, "Garden", GARDEN)
    with Mailbox(url(server, "Garden"), starttls=False) as source:
        items, skipped = listing(source)
        validity = source.uidvalidity
    assert not skipped and len(items) == 2
    uids = sorted(i.metadata["uid"] for i in items.values())
    assert set(items) == {f"imap://{USER}@127.0.0.1:{server}/Garden;UIDVALIDITY={validity}/;UID={u}" for u in uids}
    for item in items.values():
        uid = item.metadata["uid"]
        assert item.version == f"{validity}:{uid}" and item.name == f"{uid}.eml"
        assert item.metadata["mailbox"] == "Garden" and item.metadata["uidvalidity"] == validity
        assert item.size > 0 and item.folder == url(server, "Garden")
        received = datetime.datetime.fromisoformat(item.modified)
        assert received.utcoffset() == datetime.timedelta(0)
        assert abs(received - datetime.datetime.now(datetime.timezone.utc)) < datetime.timedelta(hours=1)
    # a second run: the same keys and versions, nothing new
    with Mailbox(url(server, "Garden"), starttls=False) as again:
        assert {k: i.version for k, i in listing(again)[0].items()} == {k: i.version for k, i in items.items()}


def test_messages_and_attachments_become_documents_as_eml_files_do(server, monkeypatch):
    monkeypatch.setenv("SEARCHER_IMAP_PASSWORD", PASSWORD)
    fresh_mailbox(server, "Garden", GARDEN)
    with Mailbox(url(server, "Garden"), starttls=False) as source:
        items = sorted(listing(source)[0].values(), key=lambda i: i.metadata["uid"])
        roses = documents(items[0], source.read(items[0]))
        dropped = source._client
        dropped.shutdown()  # the connection is gone (an idle time-out): read opens a new one
        compost = documents(items[1], source.read(items[1]))
        assert source._client is not dropped
    assert [d.title for d in roses] == ["Roses"] and "outward-facing bud" in roses[0].text
    assert roses[0].metadata["from"] == "Bob <bob@example.com>" and roses[0].metadata["date"].startswith("2024-01-01")
    titles = [d.metadata.get("attachment") for d in compost if isinstance(d, Document)]
    assert titles == [None, "plan.txt", "list.csv"]  # the PNG is no format the readers read
    assert "Plain text version." in compost[0].text
    assert "mulch in autumn" in compost[1].text and compost[1].metadata["parent"] == compost[0].id
    # reading left the messages unread
    client = admin(server)
    client.select('"Garden"', readonly=True)
    assert client.uid("SEARCH", None, "SEEN") == ("OK", [b""])
    client.logout()


def test_a_deleted_message_is_absent_and_a_new_uidvalidity_makes_everything_new(server, monkeypatch):
    monkeypatch.setenv("SEARCHER_IMAP_PASSWORD", PASSWORD)
    fresh_mailbox(server, "Letters", [message(f"Letter {n}", f"Letter number {n} about the garden.") for n in range(3)])
    with Mailbox(url(server, "Letters"), starttls=False) as source:
        first = listing(source)[0]
    client = admin(server)
    client.select('"Letters"')
    uid = sorted(i.metadata["uid"] for i in first.values())[1]
    client.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
    client.expunge()
    client.append('"Letters"', None, None, message("Letter 9", "A new letter."))
    client.logout()
    with Mailbox(url(server, "Letters"), starttls=False) as source:
        second = listing(source)[0]
        gone = first[source.key(uid)]
        with pytest.raises(MessageGone, match="expunged"):
            source.read(gone)
    assert source.key(uid) not in second
    assert len(set(second) - set(first)) == 1 and len(set(first) - set(second)) == 1
    # the mailbox made again: a new UIDVALIDITY, every key new
    fresh_mailbox(server, "Letters", [message("Letter 0", "Letter number 0 about the garden.")])
    with Mailbox(url(server, "Letters"), starttls=False) as source:
        third = listing(source)[0]
        assert not set(third) & set(second)
        with pytest.raises(MessageGone, match="UIDVALIDITY changed"):
            source.read(next(iter(second.values())))


def test_an_empty_mailbox_has_no_items(server, monkeypatch):
    monkeypatch.setenv("SEARCHER_IMAP_PASSWORD", PASSWORD)
    fresh_mailbox(server, "Empty", [])
    with Mailbox(url(server, "Empty"), starttls=False) as source:
        assert listing(source) == ({}, [])


def test_the_listing_goes_in_batches_and_sees_new_messages_on_an_open_connection(server, monkeypatch):
    import searcher.sources.imap as imap

    monkeypatch.setattr(imap, "FETCH_BATCH", 2)
    monkeypatch.setenv("SEARCHER_IMAP_PASSWORD", PASSWORD)
    fresh_mailbox(server, "Many", [message(f"Note {n}", f"Note number {n}.") for n in range(5)])
    with Mailbox(url(server, "Many"), starttls=False) as source:
        first = listing(source)[0]
        assert len(first) == 5
        client = admin(server)
        client.append('"Many"', None, None, message("Note 5", "Note number 5."))
        client.logout()
        second = listing(source)[0]  # the same connection: the mailbox examined again
        assert len(second) == 6 and set(first) < set(second)
        uids = [i.metadata["uid"] for i in source.items()]
        assert uids == sorted(uids)


def test_a_message_over_the_size_limit_is_skipped(server, monkeypatch):
    monkeypatch.setenv("SEARCHER_IMAP_PASSWORD", PASSWORD)
    fresh_mailbox(server, "Big", [message("Small", "short"), message("Large", "long text " * 500)])
    with Mailbox(url(server, "Big"), starttls=False, max_bytes=2000) as source:
        items, skipped = listing(source)
    assert len(items) == 1 and len(skipped) == 1
    assert skipped[0].reason.endswith("over the 2,000-byte limit") and ";UID=" in skipped[0].path


def test_the_password_comes_from_the_environment_or_a_private_file_and_never_shows(server, monkeypatch, tmp_path,
                                                                                 caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("SEARCHER_IMAP_PASSWORD", raising=False)
    fresh_mailbox(server, "Garden", GARDEN[:1])
    with pytest.raises(MailboxError, match="SEARCHER_IMAP_PASSWORD") as e:
        list(Mailbox(url(server, "Garden"), starttls=False).items())
    # a file: only its owner may read it; given, it is used before the environment variable
    monkeypatch.setenv("SEARCHER_IMAP_PASSWORD", "Wrong-" + PASSWORD)
    secret = tmp_path / "imap-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o644)
    with pytest.raises(MailboxError, match="chmod 600") as e:
        list(Mailbox(url(server, "Garden"), starttls=False, credentials_file=secret).items())
    assert PASSWORD not in str(e.value)
    secret.chmod(0o600)
    with Mailbox(url(server, "Garden"), starttls=False, credentials_file=secret) as source:
        assert len(listing(source)[0]) == 1
        assert PASSWORD not in repr(source) and PASSWORD not in repr(vars(source))
        assert all(PASSWORD not in i.key for i in source.items())
    # another variable, named
    monkeypatch.delenv("SEARCHER_IMAP_PASSWORD")
    monkeypatch.setenv("GARDEN_MAIL", PASSWORD)
    with Mailbox(url(server, "Garden"), starttls=False, credentials_env="GARDEN_MAIL") as source:
        assert len(listing(source)[0]) == 1
    # a wrong password: refused, and the error does not repeat it
    monkeypatch.setenv("SEARCHER_IMAP_PASSWORD", "Wrong-" + PASSWORD)
    with pytest.raises(MailboxError) as e:
        list(Mailbox(url(server, "Garden"), starttls=False).items())
    assert PASSWORD not in str(e.value) and "cannot read" in str(e.value)
    # a password in the URL is refused, and not repeated
    with pytest.raises(MailboxError, match="never in the URL") as e:
        Mailbox(f"imaps://{USER}:{PASSWORD}@127.0.0.1/INBOX")
    assert PASSWORD not in str(e.value)
    # a password given in Python is kept out of repr
    source = Mailbox(url(server, "Garden"), password=PASSWORD, starttls=False)
    assert PASSWORD not in repr(vars(source)) and source.url == f"imap://{USER}@127.0.0.1:{server}/Garden"
    assert PASSWORD not in caplog.text  # nor in any log line
    assert source.options == {"starttls": False}
    assert Mailbox(url(server, "Garden"), credentials_file=secret, credentials_env="X").options == {
        "credentials_env": "X", "credentials_file": str(secret)}


def test_the_registry_opens_a_mailbox_with_the_cli_options(server, monkeypatch, tmp_path):
    """`searcher index imap://...` opens it through open_source with the options it was given
    (--credentials-file), and the documents come out through load_item as the sync reads them."""
    from searcher.readers.loaders import load_item

    monkeypatch.delenv("SEARCHER_IMAP_PASSWORD", raising=False)
    fresh_mailbox(server, "Garden", GARDEN[:1])
    secret = tmp_path / "imap-password"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    source = open_source(url(server, "Garden"), {"credentials_file": str(secret), "starttls": False})
    assert isinstance(source, Mailbox) and source.options == {"credentials_file": str(secret), "starttls": False}
    [item] = listing(source)[0].values()
    docs = load_item(item.key, item.name, source.read(item), {}, LoadOptions(workers=0))
    source.close()
    assert docs[0].source == item.key and docs[0].id == item.key and docs[0].title == "Roses"


def test_no_such_mailbox_and_no_starttls(server, monkeypatch):
    monkeypatch.setenv("SEARCHER_IMAP_PASSWORD", PASSWORD)
    with pytest.raises(MailboxError, match="no mailbox 'Nowhere'"):
        list(Mailbox(url(server, "Nowhere"), starttls=False).items())
    # this server (--no-tls) offers no STARTTLS: the password is not sent in the clear
    with pytest.raises(MailboxError, match="offers no STARTTLS"):
        list(Mailbox(url(server, "INBOX")).items())


def test_mailbox_names_in_modified_utf7(server, monkeypatch):
    assert imap_utf7("Entwürfe") == "Entw&APw-rfe" and imap_utf7("A&B") == "A&-B"
    monkeypatch.setenv("SEARCHER_IMAP_PASSWORD", PASSWORD)
    client = admin(server)
    client.create('"' + imap_utf7("Entwürfe") + '"')
    client.append('"' + imap_utf7("Entwürfe") + '"', None, None, message("Draft", "A draft about tulips."))
    client.logout()
    with Mailbox(url(server, "Entw%C3%BCrfe"), starttls=False) as source:
        [item] = listing(source)[0].values()
        assert item.metadata["mailbox"] == "Entwürfe" and item.key.startswith(url(server, "Entw%C3%BCrfe") + ";")


# -- TLS: STARTTLS on pymap itself, imaps:// through a TLS front on loopback ---------------------


def certificate(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made here (cryptography)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


def tls_front(cert_file: Path, key_file: Path, backend_port: int) -> tuple[socket.socket, int]:
    """TLS from the first byte on a port of its own, passed on in the clear to the server."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def pump(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def serve():
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                tls = context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()
                continue
            plain = socket.create_connection(("127.0.0.1", backend_port))
            threading.Thread(target=pump, args=(tls, plain), daemon=True).start()
            threading.Thread(target=pump, args=(plain, tls), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener, port


def test_starttls_and_imaps_with_a_certificate_of_our_own(server, monkeypatch, tmp_path):
    cert_file, key_file = certificate(tmp_path)
    monkeypatch.setenv("SEARCHER_IMAP_PASSWORD", PASSWORD)
    # STARTTLS: pymap with the certificate
    process, port = start_pymap(tmp_path, "--cert", str(cert_file), "--key", str(key_file))
    try:
        with pytest.raises(MailboxError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            list(Mailbox(url(port, "INBOX")).items())  # not trusted without ca_file
        client = imaplib.IMAP4("127.0.0.1", port, timeout=30)
        client.starttls(ssl_context=ssl.create_default_context(cafile=str(cert_file)))
        client.login(USER, PASSWORD)
        client.append("INBOX", None, None, message("Secure", "Sent over TLS."))
        client.logout()
        with Mailbox(url(port, "INBOX"), ca_file=cert_file) as source:
            [item] = listing(source)[0].values()
            assert documents(item, source.read(item))[0].title == "Secure"
    finally:
        stop(process)
    # imaps://: TLS from the first byte, in front of the module's server
    fresh_mailbox(server, "Garden", GARDEN[:1])
    listener, port = tls_front(cert_file, key_file, server)
    try:
        with Mailbox(url(port, "Garden", "imaps"), ca_file=cert_file) as source:
            [item] = listing(source)[0].values()
            assert item.key.startswith(f"imaps://{USER}@127.0.0.1:{port}/Garden;UIDVALIDITY=")
            assert documents(item, source.read(item))[0].title == "Roses"
    finally:
        listener.close()
    assert Mailbox(f"imaps://{USER}@mail.example.com/INBOX").port == 993
    assert Mailbox(f"imap://{USER}@mail.example.com").port == 143 and Mailbox(f"imap://{USER}@h").mailbox == "INBOX"


class MailboxWorld:
    """The contract's world (tests/source_contract.py): a fresh mailbox, an item a message
    whose subject is its name and whose body is its text; a broken item one over the size
    limit the world's source is given."""

    def __init__(self, port: int, name: str):
        self.port, self.name, self.uids = port, name, {}
        fresh_mailbox(port, name, [])
        self.client = admin(port)

    def source(self):
        return Mailbox(url(self.port, self.name), password=PASSWORD, starttls=False, max_bytes=50_000)

    def put(self, name, text):
        if name in self.uids:  # a message never changes: a changed one is a new message
            self.remove(name)
        status, data = self.client.append(f'"{self.name}"', None, None, message(name, text))
        validity, uid = data[0].split(b"APPENDUID ", 1)[1].split(b"]", 1)[0].split()
        self.uids[name] = (int(validity), int(uid))

    def remove(self, name):
        self.client.select(f'"{self.name}"')
        self.client.uid("STORE", str(self.uids.pop(name)[1]), "+FLAGS", "(\\Deleted)")
        self.client.expunge()
        self.client.close()

    def put_broken(self, name):
        self.put(name, "far too long " * 10_000)

    def key(self, name):
        validity, uid = self.uids[name]
        return f"{url(self.port, self.name)};UIDVALIDITY={validity}/;UID={uid}"

    def close(self):
        self.client.logout()


class TestImapContract(SourceContract):
    @pytest.fixture
    def world(self, server, request):
        world = MailboxWorld(server, "Contract-" + request.node.name[:40])
        yield world
        world.close()

    def test_a_changed_item_gets_a_new_version_and_the_others_keep_theirs(self, world):
        """A message never changes under its UID: one replaced is a new key (the old one
        gone), and the others keep theirs."""
        world.put("a.txt", "Kittens purr when they are content.")
        world.put("b.md", "# Gardens\n\nTomatoes need sun and water.")
        old = world.key("a.txt")
        before = contract_listing(world.source())
        world.put("a.txt", "Puppies bark when they are excited, and wag their tails.")
        after = contract_listing(world.source())
        assert old in before and old not in after and world.key("a.txt") in after
        assert after[world.key("b.md")].version == before[world.key("b.md")].version


def test_a_mailbox_synced_into_an_index_then_only_what_is_new(server, monkeypatch, fake_index):
    """Through the index's sync (searcher/index/sources.py), as `searcher index imap://...`
    runs it: messages and their attachments become documents, a second run reads nothing, an
    expunged message is removed, a new one added."""
    from searcher.index.sources import sync

    monkeypatch.setenv("SEARCHER_IMAP_PASSWORD", PASSWORD)
    fresh_mailbox(server, "Synced", GARDEN)
    address = url(server, "Synced")
    report = sync(fake_index, address, {"starttls": False}, LoadOptions(workers=0))
    assert report.added == 4 and not report.skipped  # 2 messages, a text attachment, a CSV attachment's row
    docs = {d: fake_index.get_document(d) for d in fake_index.store.document_ids()}
    roses = next(d for d in docs.values() if d["title"] == "Roses")
    assert roses["source"].startswith(address + ";UIDVALIDITY=") and roses["metadata"]["type"] == "eml"
    assert roses["metadata"]["from"] == "Bob <bob@example.com>" and roses["metadata"]["uid"]

    reads = []
    real_read = Mailbox.read
    monkeypatch.setattr(Mailbox, "read", lambda self, item: reads.append(item.key) or real_read(self, item))
    report = sync(fake_index, address, {"starttls": False}, LoadOptions(workers=0))
    assert (report.added, report.unchanged, report.removed) == (0, 4, 0) and reads == []

    client = admin(server)
    client.select('"Synced"')
    client.uid("STORE", str(roses["metadata"]["uid"]), "+FLAGS", "(\\Deleted)")
    client.expunge()
    client.append('"Synced"', None, None, message("Leeks", "Grow leeks in trenches."))
    client.logout()
    report = sync(fake_index, address, {"starttls": False}, LoadOptions(workers=0))
    assert (report.added, report.removed) == (1, 1) and len(reads) == 1
