//! Both backends' embedded migrations, side by side.

use crate::store::postgres::MIGRATIONS;

/// Every SQLite migration has its PostgreSQL twin: adding
/// `migrations/000N_*.sql` without `migrations/postgres/000N_*.sql`
/// fails here.
#[test]
fn migrations_are_strictly_ascending_and_match_sqlite_versions() {
    let versions: Vec<i64> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    let sqlite: Vec<i64> = crate::store::sqlite::MIGRATIONS
        .iter()
        .map(|(v, _)| *v)
        .collect();
    assert_eq!(versions, sqlite, "PostgreSQL migrations mirror SQLite's");
}
