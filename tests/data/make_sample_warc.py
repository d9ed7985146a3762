"""Write the WARC samples in tests/data/ with warcio's WARCWriter (as crawlers do).

    python tests/data/make_sample_warc.py

writes ``sample.warc.gz`` (one gzip member per record, as Common Crawl and
``wget --warc-file`` write) and ``sample.warc`` (uncompressed) from the same
records. Record ids and dates are fixed so the files are reproducible and the
tests can name them. tests/pipelines/test_read_formats.py reads
``EXPECTED`` from here: which records are pages, which are not.
"""
from __future__ import annotations

import gzip
import io
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CLAIM_HTML = (
    "<!DOCTYPE html><html><head><title>Exosome clinic</title><script>var seo='cures all';</script></head>"
    "<body><nav>Home | Book</nav><h1>Exosome therapy</h1>"
    "<p>Our exosome therapy cures Parkinson's disease and reverses arthritis with no side effects.</p>"
    "<p>It is FDA approved and clinically proven.</p><footer>Copyright</footer></body></html>"
)
PLAIN_TEXT = ("The FDA warns consumers that no exosome products are approved to treat any disease. "
              "Ask your doctor about approved treatments.")
LATIN1_HTML = "<html><body><p>Thérapie régénérative à Genève: résultats variés selon les études.</p></body></html>"
GZIPPED_HTML = "<html><body><p>Stem cell injections reverse knee damage in one visit, guaranteed.</p></body></html>"


VARIANTS = {"gz": "0", "plain": "1", "cut": "2"}


def record_id(n: int, variant: str) -> str:
    # Valid UUIDs; the last group says which sample file and which record.
    return f"<urn:uuid:00000000-0000-4000-8000-{VARIANTS[variant]}{n:011d}>"


# (kind, warc type, uri, status, content type, body, extra http headers, outcome)
# outcome: "page" (decided or dead-lettered: a page either way), "empty" (a
# page whose content is empty: a dead letter), or the reason it is not a page.
RECORDS = [
    ("warcinfo", "warcinfo", None, None, None, None, None, "not a response"),
    ("request", "request", "https://clinic.example/exosomes", None, None, None, None, "not a response"),
    ("html", "response", "https://clinic.example/exosomes", "200 OK", "text/html; charset=utf-8",
     CLAIM_HTML.encode("utf-8"), None, "page"),
    ("text", "response", "https://regulator.example/warning.txt", "200 OK", "text/plain",
     PLAIN_TEXT.encode("utf-8"), None, "page"),
    ("latin1", "response", "https://clinique.example/fr", "200 OK", "text/html; charset=ISO-8859-1",
     LATIN1_HTML.encode("latin-1"), None, "page"),
    ("gzip", "response", "https://clinic.example/knees", "200 OK", "text/html",
     gzip.compress(GZIPPED_HTML.encode("utf-8"), mtime=0), [("Content-Encoding", "gzip")], "page"),
    ("jpeg", "response", "https://clinic.example/logo.jpg", "200 OK", "image/jpeg",
     b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9", None, "image/jpeg"),
    ("css", "response", "https://clinic.example/site.css", "200 OK", "text/css",
     b"body { color: red } /* cures */", None, "text/css"),
    ("redirect", "response", "http://clinic.example/", "301 Moved Permanently", "text/html",
     b"<html><body>Moved <a href='https://clinic.example/'>here</a></body></html>",
     [("Location", "https://clinic.example/")], "status 301"),
    ("empty", "response", "https://clinic.example/empty", "200 OK", "text/html", b"<html><body> </body></html>",
     None, "empty"),
    ("metadata", "metadata", "https://clinic.example/exosomes", None, None, None, None, "not a response"),
]
EXPECTED_PAGES = [r[0] for r in RECORDS if r[7] in ("page", "empty")]
EXPECTED_NOT_PAGES = [r[0] for r in RECORDS if r[7] not in ("page", "empty")]


def warc_date(n: int) -> str:
    return f"2026-11-20T10:{n:02d}:00Z"


def write_sample(path: str, gzip_records: bool, variant: str = "") -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    variant = variant or ("gz" if gzip_records else "plain")
    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=gzip_records)
        for n, (kind, warc_type, uri, status, ctype, body, extra, _) in enumerate(RECORDS):
            headers = {"WARC-Record-ID": record_id(n, variant), "WARC-Date": warc_date(n)}
            if warc_type == "warcinfo":
                record = writer.create_warcinfo_record(
                    os.path.basename(path), {"software": "regenwatch tests/data/make_sample_warc.py",
                                             "format": "WARC File Format 1.0"})
                record.rec_headers.replace_header("WARC-Record-ID", headers["WARC-Record-ID"])
                record.rec_headers.replace_header("WARC-Date", headers["WARC-Date"])
            elif warc_type == "request":
                http = StatusAndHeaders("GET /exosomes HTTP/1.1", [("Host", "clinic.example")],
                                        is_http_request=True)
                record = writer.create_warc_record(uri, "request", payload=io.BytesIO(b""),
                                                   http_headers=http, warc_headers_dict=headers)
            elif warc_type == "metadata":
                record = writer.create_warc_record(
                    uri, "metadata", payload=io.BytesIO(b"outlinks: https://clinic.example/knees\n"),
                    warc_content_type="application/warc-fields", warc_headers_dict=headers)
            else:
                http = StatusAndHeaders(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))]
                                        + (extra or []), protocol="HTTP/1.1")
                record = writer.create_warc_record(uri, "response", payload=io.BytesIO(body),
                                                   http_headers=http, warc_headers_dict=headers)
            writer.write_record(record)


def main(argv=None) -> int:
    out_dir = (argv or sys.argv[1:] or [HERE])[0]
    write_sample(os.path.join(out_dir, "sample.warc.gz"), gzip_records=True)
    write_sample(os.path.join(out_dir, "sample.warc"), gzip_records=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
