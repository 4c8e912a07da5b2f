//! The reference program of issue 7, "the practical limit to approach": a
//! minimal Rust program doing the sequential job by hand. It follows a
//! `next_url` stream with reqwest, parses each page with serde_json (the
//! records array as raw slices, each record's `id`), and upserts
//! `(pk, json)` with the stream's cursor in one SQLite transaction per page
//! (WAL, `synchronous = NORMAL`, one cached one-row statement). Fetching and
//! parsing page k+1 overlaps writing page k, which runs on a blocking
//! thread.
//!
//! It runs as a mode of the benchmark binary ([`REFERENCE_FLAG`]), started
//! through the launcher like apisync, so both are measured the same way in
//! the same run. It prints the number of rows stored.

use std::process::ExitCode;

use rusqlite::Connection;
use serde::Deserialize;
use serde_json::value::RawValue;

/// `throughput --reference FIRST_PAGE_URL DATABASE`.
pub const REFERENCE_FLAG: &str = "--reference";

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    data: Vec<&'a RawValue>,
    links: Links,
}

#[derive(Deserialize)]
struct Links {
    next: Option<String>,
}

#[derive(Deserialize)]
struct Keyed {
    id: serde_json::Value,
}

type Rows = Vec<(String, String)>;

pub fn main(args: &[String]) -> ExitCode {
    let [url, database] = args else {
        eprintln!("{REFERENCE_FLAG} FIRST_PAGE_URL DATABASE");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sync(url, database)) {
        Ok(rows) => {
            println!("{rows}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("reference program: {err}");
            ExitCode::FAILURE
        }
    }
}

fn open(database: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(database)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS records (_pk TEXT PRIMARY KEY, _data TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS checkpoints (job TEXT PRIMARY KEY, position TEXT);",
    )?;
    Ok(conn)
}

/// One page's rows and the cursor after it, in one transaction.
fn write(conn: &mut Connection, rows: &Rows, next: Option<&str>) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO records (_pk, _data) VALUES (?1, ?2)
             ON CONFLICT (_pk) DO UPDATE SET _data = excluded._data",
        )?;
        for (pk, data) in rows {
            insert.execute((pk, data))?;
        }
        tx.prepare_cached(
            "INSERT INTO checkpoints (job, position) VALUES ('bench', ?1)
             ON CONFLICT (job) DO UPDATE SET position = excluded.position",
        )?
        .execute([next])?;
    }
    tx.commit()
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn sync(first: &str, database: &str) -> Result<i64, Error> {
    let client = reqwest::Client::new();
    let mut url = reqwest::Url::parse(first)?;
    let mut conn = Some(open(database)?);
    let mut writing: Option<tokio::task::JoinHandle<rusqlite::Result<Connection>>> = None;
    loop {
        let body = client
            .get(url.clone())
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let page: Page = serde_json::from_slice(&body)?;
        let rows = page
            .data
            .iter()
            .map(|raw| {
                let keyed: Keyed = serde_json::from_str(raw.get())?;
                let pk = serde_json::Value::Array(vec![keyed.id]).to_string();
                Ok((pk, raw.get().to_string()))
            })
            .collect::<Result<Rows, serde_json::Error>>()?;
        let next = page.links.next.map(|n| url.join(&n)).transpose()?;
        // The previous page's transaction must be done before this one starts.
        if let Some(previous) = writing.take() {
            conn = Some(previous.await??);
        }
        let mut db = conn.take().ok_or("no connection")?;
        let cursor = next.as_ref().map(|u| u.to_string());
        writing = Some(tokio::task::spawn_blocking(move || {
            write(&mut db, &rows, cursor.as_deref()).map(|()| db)
        }));
        match next {
            Some(next) => url = next,
            None => break,
        }
    }
    if let Some(last) = writing.take() {
        conn = Some(last.await??);
    }
    let conn = conn.ok_or("no connection")?;
    Ok(conn.query_row("SELECT count(*) FROM records", [], |r| r.get(0))?)
}
