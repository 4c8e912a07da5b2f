"""The plain Python loop apisync is compared with (issue 7).

Follows a next_url stream with requests, and writes each page's records
(primary key and the record as JSON text) and the stream's checkpoint in one
sqlite3 transaction per page, WAL, synchronous=NORMAL: what a user would
write by hand. Prints the number of records stored.

usage: python_baseline.py FIRST_PAGE_URL DATABASE
"""

import json
import sqlite3
import sys
from datetime import datetime, timezone
from urllib.parse import urljoin

import requests


def main(url, database):
    db = sqlite3.connect(database)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS records ("
        "_pk TEXT PRIMARY KEY, _data TEXT NOT NULL, _synced_at TEXT NOT NULL)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS checkpoints (job TEXT PRIMARY KEY, position TEXT)"
    )
    session = requests.Session()
    while url:
        response = session.get(url, timeout=30)
        response.raise_for_status()
        body = response.json()
        nxt = body["links"]["next"]
        nxt = urljoin(url, nxt) if nxt else None
        now = datetime.now(timezone.utc).isoformat()
        rows = [(json.dumps([r["id"]]), json.dumps(r), now) for r in body["data"]]
        with db:
            db.executemany(
                "INSERT INTO records (_pk, _data, _synced_at) VALUES (?, ?, ?) "
                "ON CONFLICT (_pk) DO UPDATE SET _data = excluded._data, "
                "_synced_at = excluded._synced_at",
                rows,
            )
            db.execute(
                "INSERT INTO checkpoints (job, position) VALUES ('bench', ?) "
                "ON CONFLICT (job) DO UPDATE SET position = excluded.position",
                (nxt,),
            )
        url = nxt
    (count,) = db.execute("SELECT count(*) FROM records").fetchone()
    print(count)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
