//! A file's text kept beside its definition, so that byte spans from toml
//! and from `Spanned` fields can be turned into line:column at any stage.

use std::ops::Range;
use std::path::PathBuf;

/// A loaded file: where it came from and what it said.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        SourceFile {
            path: path.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset. Offsets
    /// past the end or inside a character are clamped, never a panic.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut end = offset.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &self.text[..end];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// The dotted name of the table a byte offset sits in (`"pagination"`,
    /// `"auth.acme"`, `"partitions.dates"` inside an inline table), or ""
    /// at the top level. Used to say where an unknown key was found.
    pub fn table_at(&self, span: &Range<usize>) -> String {
        let mut end = span.start.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let line_start = self.text[..end].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[end..]
            .find('\n')
            .map_or(self.text.len(), |i| end + i);
        let line = &self.text[line_start..line_end];
        if let Some(header) = header_name(line) {
            return header;
        }
        let mut table = self.text[..line_start]
            .lines()
            .rev()
            .find_map(header_name)
            .unwrap_or_default();
        // An error about an inline table itself points at its `{`.
        let through = if self.text[end..].starts_with('{') {
            end + 1
        } else {
            end
        };
        for inline in inline_table_keys(&self.text[line_start..through]) {
            if !table.is_empty() {
                table.push('.');
            }
            table.push_str(&inline);
        }
        table
    }

    /// The dotted key at the start of the line holding `span` (inside
    /// `table`), for errors about a value such as "invalid type".
    pub fn key_at(&self, span: &Range<usize>, table: &str) -> String {
        let mut end = span.start.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let line_start = self.text[..end].rfind('\n').map_or(0, |i| i + 1);
        let prefix = &self.text[line_start..end];
        let key = prefix
            .rsplit_once('=')
            .map(|(before, _)| {
                before
                    .rsplit(['{', ','])
                    .next()
                    .unwrap_or(before)
                    .trim()
                    .trim_matches('"')
                    .to_string()
            })
            .unwrap_or_default();
        match (table.is_empty(), key.is_empty()) {
            (_, true) => table.to_string(),
            (true, false) => key,
            (false, false) => format!("{table}.{key}"),
        }
    }
}

/// `[a.b]` or `[[a.b]]` -> `a.b`, with quotes and spaces dropped.
fn header_name(line: &str) -> Option<String> {
    let line = line.trim();
    if !line.starts_with('[') {
        return None;
    }
    let inner = line.trim_start_matches('[');
    let close = inner.find(']')?;
    let name: String = inner[..close]
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '"' && *c != '\'')
        .collect();
    Some(name)
}

/// In `dates = { from = "x", stepp = ...` (up to the error), the keys of
/// the inline tables still open, outermost first: `dates`.
fn inline_table_keys(prefix: &str) -> Vec<String> {
    let mut open: Vec<String> = Vec::new();
    for (i, c) in prefix.char_indices() {
        match c {
            '{' => {
                let before = prefix[..i].trim_end().strip_suffix('=').unwrap_or("");
                let key = before
                    .trim_end()
                    .rsplit(|c: char| c.is_whitespace() || c == ',' || c == '{')
                    .next()
                    .unwrap_or("");
                open.push(key.trim_matches('"').to_string());
            }
            '}' => {
                open.pop();
            }
            _ => {}
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_characters() {
        let file = SourceFile::new("x.toml", "a = 1\nb = \"é\"\nc = 3\n");
        assert_eq!(file.line_col(0), (1, 1));
        assert_eq!(file.line_col(6), (2, 1));
        let c = file.text.find("c =").unwrap();
        assert_eq!(file.line_col(c), (3, 1));
        let quote_after = file.text.find("é").unwrap() + "é".len();
        assert_eq!(file.line_col(quote_after), (2, 7));
        assert_eq!(file.line_col(9999), (4, 1));
    }

    #[test]
    fn table_at_finds_headers_and_inline_tables() {
        let text = "x = 1\n[pagination]\ntype = \"cursor\"\n[partitions]\ndates = { from = \"a\", stepp = 1 }\n";
        let file = SourceFile::new("x.toml", text);
        let at = |s: &str| {
            let i = text.find(s).unwrap();
            file.table_at(&(i..i + 1))
        };
        assert_eq!(at("x ="), "");
        assert_eq!(at("type"), "pagination");
        assert_eq!(at("stepp"), "partitions.dates");
        assert_eq!(at("[partitions]"), "partitions");
    }
}
