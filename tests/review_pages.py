"""Pages and small file helpers shared by the reviewing tests (clustering, review, sampling, feedback)."""
from __future__ import annotations

import glob
import json
import os

import fastavro

from regenwatch.schemas import load_schema
from regenwatch.training.data_io import DATA_DIR, read_jsonl

# One clinic template published for several towns: only place names differ.
TEMPLATE = (
    "<html><body><h1>Exosome therapy near {town}</h1>"
    "<p>Looking for exosome therapy in {town}? Our {town} regenerative clinic offers umbilical cord "
    "derived exosome infusions that cure arthritis, reverse aging and heal damaged nerves. Patients "
    "from all over {county} visit our modern facility. Exosomes are 100% safe with no side effects and "
    "are FDA approved. Many of our patients report being pain-free within weeks. Exosomes are tiny "
    "vesicles that carry growth factors and signal your own cells to repair damaged tissue.</p>"
    "<p>Book a free consultation with our {town} team today and find out whether exosome therapy is "
    "right for you. Call us or fill in the form below, and a patient coordinator will contact you "
    "within one business day.</p></body></html>"
)
TOWNS = [("Austin", "Travis County"), ("San Luis Obispo", "San Luis Obispo County"),
         ("Boise", "Ada County"), ("Fort Lauderdale", "Broward County")]

UNRELATED = {
    "fda-warning": (
        "The FDA warns consumers that no exosome products are approved to treat any disease. "
        "Clinics that market exosomes for joint pain or hair loss are breaking the law. "
        "Ask your doctor about approved treatments; early studies are small and results vary."),
    "knee-clinic": (
        "Our knee clinic offers physical therapy, bracing and weight-loss advice for arthritis. "
        "We accept most insurance plans and evening appointments are available. "
        "Call us to book a visit with a physiotherapist near the city centre."),
    "stem-cell-cures": (
        "Our stem cell therapy cures Parkinson's disease and Alzheimer's with no side effects. "
        "It is completely safe and FDA approved. Clinically proven to reverse multiple sclerosis. "
        "Better than surgery: avoid knee replacement forever with one injection."),
}

# A page that tries to inject markup and terminal escapes into a reviewer's screen.
HOSTILE_ID = 'evil"><script>alert(1)</script>\x1b[2J\u202e'
HOSTILE = {
    "id": HOSTILE_ID,
    "url": "javascript:alert(document.cookie)",
    "content": ("Our stem cell injections cure diabetes <img src=x onerror=alert(2)> and "
                "Parkinson's disease.</p><script>alert('x')</script> Guaranteed results with no side effects."),
    "content_type": "text/plain",
}


def template_rows(prefix: str = "tmpl"):
    return [{"id": f"{prefix}-{town.split()[0].lower()}", "url": f"https://clinic.example/{town.lower().replace(' ', '-')}",
             "content": TEMPLATE.format(town=town, county=county), "content_type": "text/html"}
            for town, county in TOWNS]


def unrelated_rows():
    return [{"id": key, "content": text, "content_type": "text/plain"} for key, text in UNRELATED.items()]


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return str(path)


def tiny_training_files(folder):
    """A tiny sample set (12 flagged and 12 unflagged real pages, a quarter of one authored sentence file)
    written to folder: enough for `regenwatch train --folds 2` to test its wiring quickly."""
    rows = read_jsonl(os.path.join(DATA_DIR, "real", "train_pages.jsonl"))
    tiny = [r for r in rows if r["label"] == 1][:12] + [r for r in rows if r["label"] == 0][:12]
    sentences = read_jsonl(sorted(glob.glob(os.path.join(DATA_DIR, "authored", "sentences_*.jsonl")))[0])[::4]
    return tiny, [write_jsonl(os.path.join(str(folder), "pages.jsonl"), tiny),
                  write_jsonl(os.path.join(str(folder), "sentences.jsonl"), sentences)]


def write_avro(path, schema_name, records):
    with open(path, "wb") as handle:
        fastavro.writer(handle, load_schema(schema_name), records)
    return str(path)


def read_avro(directory, prefix):
    import glob

    records = []
    for path in sorted(glob.glob(os.path.join(str(directory), f"{prefix}-*.avro"))):
        with open(path, "rb") as handle:
            records.extend(fastavro.reader(handle))
    return records
