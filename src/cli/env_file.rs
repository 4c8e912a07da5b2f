//! `--env-file`: KEY=VALUE lines (a .env file) loaded into the environment
//! before anything else runs. Variables already set win, as with docker and
//! most dotenv tools; values are never printed.

use std::path::Path;

use anyhow::{Context as _, bail};

pub fn load(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read env file {}", path.display()))?;
    for (key, value) in parse(&text).with_context(|| format!("in env file {}", path.display()))? {
        if std::env::var_os(&key).is_none() {
            // SAFETY: called from `cli::main` before the runtime or any other
            // thread is started, so nothing reads the environment concurrently.
            unsafe { std::env::set_var(&key, value) };
        }
    }
    Ok(())
}

/// `KEY=VALUE` per line; `#` comments, blank lines, `export ` prefixes and
/// matching single or double quotes around the value are accepted.
pub fn parse(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            bail!("line {}: expected KEY=VALUE", number + 1);
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("line {}: {key:?} is not a variable name", number + 1);
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        pairs.push((key.to_string(), unquoted.to_string()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_quotes_and_export() {
        let pairs = parse("# c\nexport A=1\nB=\"two words\"\n\nC='x=y'\n").unwrap();
        assert_eq!(
            pairs,
            [
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x=y".into())
            ]
        );
    }

    #[test]
    fn a_bad_line_names_its_number_but_not_its_value() {
        let err = parse("A=1\nthis-is-secret\n").unwrap_err().to_string();
        assert_eq!(err, "line 2: expected KEY=VALUE");
    }
}
