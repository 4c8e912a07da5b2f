use super::*;

const URL: &str = "postgres://app:s3cr3t-pw@db:5432/sync?sslmode=require";

#[test]
fn a_password_the_url_parser_would_misread_is_refused_without_showing_it() {
    for text in [
        "postgres://app:2024/Spring@db/sync",
        "postgres://app:/pw@db/sync",
        "postgres://app:pw?x@db/sync",
        "postgres://app:pw#x@db/sync",
    ] {
        let err = PostgresUrl::parse(text).unwrap_err().to_string();
        for secret in ["Spring", "/pw", "pw?x", "pw#x"] {
            assert!(!err.contains(secret), "{text}: {err}");
        }
    }
    let misread = PostgresUrl::parse("postgres://app:2024/Spring@db/sync").unwrap_err();
    assert!(misread.to_string().contains("percent-encoded"), "{misread}");
    let encoded = PostgresUrl::parse("postgres://app:2024%2FSpring@db/sync").unwrap();
    assert_eq!(encoded.redacted(), "postgres://app:***@db/sync");
}

#[test]
fn a_postgres_url_selects_postgres_and_hides_its_password_everywhere() {
    let db = Database::from_setting(URL, Path::new("/base")).unwrap();
    let Database::Postgres(url) = &db else {
        panic!("{db:?}");
    };
    assert_eq!(url.ssl_mode(), SslMode::Require);
    assert_eq!(url.expose(), URL);
    assert_eq!(
        db.to_string(),
        "postgres://app:***@db:5432/sync?sslmode=require"
    );
    for text in [
        db.to_string(),
        format!("{db:?}"),
        format!("{url:?}"),
        url.redacted().to_string(),
    ] {
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("app:***@db:5432/sync"), "{text}");
    }
}

#[test]
fn a_password_parameter_is_hidden_too_and_sslmode_defaults_to_prefer() {
    let db = Database::from_setting(
        "postgresql://app@db/sync?password=hunter2&application_name=x",
        Path::new("."),
    )
    .unwrap();
    let text = format!("{db} {db:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("password=***"), "{text}");
    let Database::Postgres(url) = db else {
        panic!()
    };
    assert_eq!(url.ssl_mode(), SslMode::Prefer);
}

#[test]
fn anything_else_is_a_sqlite_path_relative_to_the_base() {
    assert_eq!(
        Database::from_setting("data/x.db", Path::new("/p")).unwrap(),
        Database::Sqlite(PathBuf::from("/p/data/x.db"))
    );
    assert_eq!(
        Database::from_setting("/abs.db", Path::new("/p")).unwrap(),
        Database::Sqlite(PathBuf::from("/abs.db"))
    );
}

#[test]
fn bad_urls_are_refused_without_showing_the_password() {
    for (text, reason) in [
        ("postgres://app:pw1@db/x?sslmode=verify-full", "sslmode"),
        ("postgres://app:pw1@:5432/x", "URL"),
        ("postgres:///x", "no host"),
    ] {
        let err = Database::from_setting(text, Path::new(".")).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains(reason), "{text}: {shown}");
        assert!(!shown.contains("pw1"), "{shown}");
        assert!(shown.contains("hint:"), "{shown}");
    }
}

/// `--db` may carry a password: the argument's Display and Debug show
/// it hidden; a path shows as typed.
#[test]
fn a_database_argument_never_shows_its_password() {
    let arg = DatabaseArg::new(URL);
    assert!(arg.is_url());
    assert_eq!(arg.expose(), URL);
    assert_eq!(
        arg.to_string(),
        "postgres://app:***@db:5432/sync?sslmode=require"
    );
    let unreadable = DatabaseArg::new("postgres://app:s3cr3t@[bad");
    assert_eq!(unreadable.to_string(), "postgres://...");
    assert!(!format!("{unreadable:?}").contains("s3cr3t"));

    let path = DatabaseArg::new("data/apisync.db");
    assert!(!path.is_url());
    assert_eq!(path.to_string(), "data/apisync.db");
}
