//! Shape errors all at once: YAML deserialization stops at its first error, so the policy is
//! parsed again without the offending entry (the key-value pair of a flow mapping, or the
//! line of a block mapping with the lines nested under it) until it parses, each error kept
//! with its location in the original text. Removing an entry never moves later lines up:
//! removed lines are left empty.
//!
//! One cause, one error: a key one or two letters from a field the mapping takes
//! (`locaton`) is reported with that field ("did you mean `location`?") and read as it, so
//! the field is not also reported missing; a mapping missing a field is left out whole (not
//! entry by entry, which would report its other fields missing too), and what it defined is
//! named in [`Recovered::left_out`] so later checks do not report it again as unknown.

use std::path::Path;

use super::error::PolicyError;
use super::raw::RawZone;

/// Most shape errors collected from one file: past this, fixing the first ones comes first.
const MAX_SHAPE_ERRORS: usize = 50;

/// What recovery made of a file.
pub(super) struct Recovered {
    /// The raw zone of what parses once every shape error is dealt with (`None` when even
    /// that does not parse).
    pub raw: Option<RawZone>,
    /// Every shape error found, one per cause.
    pub errors: Vec<PolicyError>,
    /// Keys of the mappings left out whole (a node missing a field): later checks that
    /// find them missing would only repeat the error.
    pub left_out: Vec<String>,
}

/// Parses `text`, dealing with shape errors one by one as the module says.
pub(super) fn parse_all(path: &Path, text: &str) -> Recovered {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let mut out = Recovered {
        raw: None,
        errors: Vec::new(),
        left_out: Vec::new(),
    };
    for _ in 0..MAX_SHAPE_ERRORS {
        let current = lines.join("\n");
        let error = match serde_saphyr::from_str::<RawZone>(&current) {
            Ok(raw) => {
                out.raw = Some(raw);
                return out;
            }
            Err(error) => error,
        };
        let (line, column) = error.location().map_or((0, 0), |l| (l.line(), l.column()));
        let mut message = super::yaml_message(&error);
        let near_miss = unknown_field(&error).and_then(|(field, expected)| {
            let suggestion = closest(field, expected)?;
            Some((field.to_string(), suggestion))
        });
        if let Some((_, suggestion)) = &near_miss {
            message = format!("{message}; did you mean `{suggestion}`?");
        }
        let repeated = out
            .errors
            .iter()
            .any(|e| e.line == line && e.column == column && e.message == message);
        if !repeated {
            out.errors.push(PolicyError {
                path: path.to_path_buf(),
                line,
                column,
                message,
            });
        }
        // Only shape errors of a well-formed document are worth parsing again for: after a
        // YAML syntax error the rest of the file cannot be read reliably.
        if repeated || !is_shape_error(&error) {
            break;
        }
        let dealt_with = match (&near_miss, missing_field(&error)) {
            (Some((field, suggestion)), _) => rename_key(&mut lines, line, field, suggestion),
            (None, true) => match leave_out_owner(&mut lines, line, column) {
                Some(key) => {
                    out.left_out.push(key);
                    true
                }
                None => false,
            },
            (None, false) => leave_out(&mut lines, line, column),
        };
        if !dealt_with {
            break;
        }
    }
    out
}

/// The unknown field of an error, and the fields the mapping takes.
fn unknown_field(error: &serde_saphyr::Error) -> Option<(&str, &[&'static str])> {
    use serde_saphyr::Error as E;
    match error {
        E::WithSnippet { error, .. } => unknown_field(error),
        E::SerdeUnknownField {
            field, expected, ..
        } => Some((field.as_str(), expected.as_slice())),
        _ => None,
    }
}

fn missing_field(error: &serde_saphyr::Error) -> bool {
    use serde_saphyr::Error as E;
    match error {
        E::WithSnippet { error, .. } => missing_field(error),
        E::SerdeMissingField { .. } => true,
        _ => false,
    }
}

/// The expected field a key is a near miss of: one or two edits away (one for short keys).
fn closest(key: &str, expected: &[&'static str]) -> Option<&'static str> {
    let allowed = if key.len() <= 4 { 1 } else { 2 };
    expected
        .iter()
        .map(|e| (edit_distance(key, e), *e))
        .filter(|(d, _)| *d > 0 && *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

/// Levenshtein distance, with a swap of neighbours counting one (`wieght`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// Renames the key `from` on line `line` (1-based) to `to`, as a whole word followed by a
/// colon; false when it is not there.
fn rename_key(lines: &mut [String], line: u64, from: &str, to: &str) -> bool {
    let Some(text) = usize::try_from(line)
        .ok()
        .and_then(|l| l.checked_sub(1))
        .and_then(|i| lines.get_mut(i))
    else {
        return false;
    };
    let bytes = text.as_bytes();
    let found = text.match_indices(from).map(|(i, _)| i).find(|&i| {
        let before = i.checked_sub(1).map(|b| bytes[b]);
        let after = text[i + from.len()..]
            .trim_start()
            .as_bytes()
            .first()
            .copied();
        before.is_none_or(|b| matches!(b, b' ' | b'{' | b',' | b'"' | b'\'')) && after == Some(b':')
    });
    match found {
        Some(i) => {
            text.replace_range(i..i + from.len(), to);
            true
        }
        None => false,
    }
}

/// Leaves out the mapping missing a field, whole: the block entry whose value holds the
/// error's position (the line itself for a flow mapping on it, else the nearest line above
/// indented less), with the lines nested under it. Returns its key.
fn leave_out_owner(lines: &mut [String], line: u64, column: u64) -> Option<String> {
    let index = usize::try_from(line).ok()?.checked_sub(1)?;
    let text = lines.get(index)?.clone();
    let indent = |t: &str| t.len() - t.trim_start().len();
    let column = usize::try_from(column).unwrap_or(0).saturating_sub(1);
    let flow = text
        .get(..column.min(text.len()))
        .is_some_and(|t| t.contains('{'));
    let owner = if flow || text.trim().is_empty() {
        index
    } else {
        let own = indent(&text);
        (0..index)
            .rev()
            .find(|&i| !lines[i].trim().is_empty() && indent(&lines[i]) < own)?
    };
    let key = lines[owner]
        .trim()
        .split(':')
        .next()
        .unwrap_or_default()
        .trim_matches(|c| c == '"' || c == '\'' || c == '-' || c == ' ')
        .to_string();
    let owner_line = u64::try_from(owner + 1).ok()?;
    leave_out(lines, owner_line, 0).then_some(key)
}

/// Whether an error is about the document's shape (a key, a type, a value, a duplicate),
/// not its YAML syntax.
fn is_shape_error(error: &serde_saphyr::Error) -> bool {
    use serde_saphyr::Error as E;
    match error {
        E::WithSnippet { error, .. } => is_shape_error(error),
        E::Message { .. }
        | E::DuplicateMappingKey { .. }
        | E::SerdeInvalidType { .. }
        | E::SerdeInvalidValue { .. }
        | E::SerdeInvalidLength { .. }
        | E::SerdeUnknownVariant { .. }
        | E::SerdeUnknownField { .. }
        | E::SerdeMissingField { .. }
        | E::InvalidScalar { .. }
        | E::NonFiniteFloat { .. }
        | E::InvalidBooleanStrict { .. } => true,
        _ => false,
    }
}

/// Leaves out the entry at `line`:`column` (1-based): the pair of the innermost flow mapping
/// or sequence around it, else the block line and the lines nested under it. False when
/// nothing could be left out.
fn leave_out(lines: &mut [String], line: u64, column: u64) -> bool {
    let Some(index) = usize::try_from(line).ok().and_then(|l| l.checked_sub(1)) else {
        return false;
    };
    let Some(text) = lines.get(index).cloned() else {
        return false;
    };
    let column = usize::try_from(column).unwrap_or(0).saturating_sub(1);
    if let Some((start, end)) = flow_entry(&text, column) {
        let mut kept = text.clone();
        kept.replace_range(start..end, "");
        if kept != text {
            lines[index] = kept;
            return true;
        }
    }
    // A block entry: this line and every following line indented deeper (or blank).
    let indent = text.len() - text.trim_start().len();
    if text.trim().is_empty() {
        return false;
    }
    lines[index] = String::new();
    for next in lines.iter_mut().skip(index + 1) {
        let next_indent = next.len() - next.trim_start().len();
        if !next.trim().is_empty() && next_indent <= indent {
            break;
        }
        next.clear();
    }
    true
}

/// The byte range of the flow-collection entry (`key: value` or an item) around `column`,
/// with one separating comma, if `column` is inside a `{...}` or `[...]` on this line.
fn flow_entry(text: &str, column: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    // Open brackets before the column, innermost last (quotes respected).
    let mut open: Vec<usize> = Vec::new();
    let mut quote: Option<u8> = None;
    for (i, &b) in bytes.iter().enumerate().take(column.min(bytes.len())) {
        match (quote, b) {
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'{' | b'[') => open.push(i),
            (None, b'}' | b']') => {
                open.pop();
            }
            (None, b'#') => break,
            _ => {}
        }
    }
    let opener = *open.last()?;
    // The entry starts after the last separator at this depth before the column.
    let mut start = opener + 1;
    let mut depth = 0usize;
    quote = None;
    let mut i = opener + 1;
    while i < bytes.len() {
        let b = bytes[i];
        match (quote, b) {
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'{' | b'[') => depth += 1,
            (None, b'}' | b']') if depth == 0 => {
                // The end of the collection: the entry runs to here.
                return (start <= column.max(start)).then_some(trim_comma(bytes, start, i));
            }
            (None, b'}' | b']') => depth -= 1,
            (None, b',') if depth == 0 => {
                if i >= column {
                    return Some((start, i + 1));
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The last entry of a collection: also take the comma before it, if any.
fn trim_comma(bytes: &[u8], start: usize, end: usize) -> (usize, usize) {
    let before = bytes[..start]
        .iter()
        .rposition(|b| !b.is_ascii_whitespace());
    match before {
        Some(comma) if bytes[comma] == b',' => (comma, end),
        _ => (start, end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_entries_and_block_lines_are_left_out() {
        let line = "  tokyo: {tier: core, bogus: 1, geo: AS-JP}";
        let at = line.find("bogus").unwrap();
        let (s, e) = flow_entry(line, at).unwrap();
        let mut kept = line.to_string();
        kept.replace_range(s..e, "");
        assert_eq!(kept, "  tokyo: {tier: core, geo: AS-JP}");
        let last = "  tokyo: {tier: core, bogus: 1}";
        let (s, e) = flow_entry(last, last.find("bogus").unwrap()).unwrap();
        let mut kept = last.to_string();
        kept.replace_range(s..e, "");
        assert_eq!(kept, "  tokyo: {tier: core}");
        let mut lines: Vec<String> = ["a:", "  b: 1", "  c:", "    d: 2", "  e: 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(leave_out(&mut lines, 3, 3));
        assert_eq!(lines, ["a:", "  b: 1", "", "", "  e: 3"]);
    }
}
