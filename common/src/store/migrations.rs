//! Versioned schema migrations, embedded in the binary, one SQL file per backend and version.
//!
//! Applied in order at admin start-up and recorded in `schema_migrations`; the proxy only
//! checks the version. Files are never edited once released: a change is a new version.

/// One migration: its version, a name, and the SQL for each backend.
#[derive(Debug)]
pub(crate) struct Migration {
    pub(crate) version: u32,
    pub(crate) name: &'static str,
    pub(crate) sqlite: &'static str,
    pub(crate) mysql: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sqlite: include_str!("../../migrations/sqlite/0001_init.sql"),
        mysql: include_str!("../../migrations/mysql/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "visitor_sketches",
        sqlite: include_str!("../../migrations/sqlite/0002_visitor_sketches.sql"),
        mysql: include_str!("../../migrations/mysql/0002_visitor_sketches.sql"),
    },
    Migration {
        version: 3,
        name: "fraud_reviews",
        sqlite: include_str!("../../migrations/sqlite/0003_fraud_reviews.sql"),
        mysql: include_str!("../../migrations/mysql/0003_fraud_reviews.sql"),
    },
    Migration {
        version: 4,
        name: "click_segments",
        sqlite: include_str!("../../migrations/sqlite/0004_click_segments.sql"),
        mysql: include_str!("../../migrations/mysql/0004_click_segments.sql"),
    },
    Migration {
        version: 5,
        name: "pending_aggregates",
        sqlite: include_str!("../../migrations/sqlite/0005_pending_aggregates.sql"),
        mysql: include_str!("../../migrations/mysql/0005_pending_aggregates.sql"),
    },
    Migration {
        version: 6,
        name: "visitor_sketch_parts",
        sqlite: include_str!("../../migrations/sqlite/0006_visitor_sketch_parts.sql"),
        mysql: include_str!("../../migrations/mysql/0006_visitor_sketch_parts.sql"),
    },
];

/// The schema version this binary was built for.
pub const LATEST_SCHEMA_VERSION: u32 = 6;

/// Splits a migration file into statements: `;` at the end of a line ends a statement, and
/// `--` comment lines are dropped. (Our migrations contain no semicolons inside strings.)
pub(crate) fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').trim().to_owned();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_and_the_last_is_the_latest() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
        assert_eq!(
            MIGRATIONS.last().map(|m| m.version),
            Some(LATEST_SCHEMA_VERSION)
        );
    }

    #[test]
    fn both_backends_create_the_same_tables() {
        use std::collections::BTreeSet;
        // The tables that exist after each version, following creates, drops and renames.
        let apply = |tables: &mut BTreeSet<String>, sql: &str| {
            for stmt in statements(sql) {
                let words: Vec<&str> = stmt.split_whitespace().collect();
                match words.as_slice() {
                    ["CREATE", "TABLE", "IF", "NOT", "EXISTS", name, ..] => {
                        tables.insert((*name).to_owned());
                    }
                    ["DROP", "TABLE", "IF", "EXISTS", name, ..] | ["DROP", "TABLE", name, ..] => {
                        tables.remove(*name);
                    }
                    ["ALTER", "TABLE", from, "RENAME", "TO", to, ..] => {
                        tables.remove(*from);
                        tables.insert((*to).to_owned());
                    }
                    _ => {}
                }
            }
        };
        let (mut sqlite, mut mysql) = (BTreeSet::new(), BTreeSet::new());
        for m in MIGRATIONS {
            apply(&mut sqlite, m.sqlite);
            apply(&mut mysql, m.mysql);
            assert_eq!(sqlite, mysql, "after migration {}", m.version);
        }
        assert!(sqlite.contains("clicks") && sqlite.contains("visitor_sketches"));
        assert!(!sqlite.contains("unique_visitors"));
    }

    #[test]
    fn statements_are_split_on_line_ending_semicolons() {
        let sql = "-- c\nCREATE TABLE a (\n x INT\n);\n\nCREATE INDEX i ON a (x);\n";
        assert_eq!(
            statements(sql),
            vec![
                "CREATE TABLE a (\n x INT\n)".to_owned(),
                "CREATE INDEX i ON a (x)".to_owned()
            ]
        );
    }
}
