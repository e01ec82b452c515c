//! Shape errors all at once: YAML deserialization stops at its first error, so the policy is
//! parsed again without the offending entry (the key-value pair of a flow mapping, or the
//! line of a block mapping with the lines nested under it) until it parses, each error kept
//! with its location in the original text. Removing an entry never moves later lines up:
//! removed lines are left empty.

use std::path::Path;

use super::error::PolicyError;
use super::raw::RawZone;

/// Most shape errors collected from one file: past this, fixing the first ones comes first.
const MAX_SHAPE_ERRORS: usize = 50;

/// The raw zone of what parses once every shape error's entry is left out (`None` when even
/// that does not parse), and every shape error found.
pub(super) fn parse_all(path: &Path, text: &str) -> (Option<RawZone>, Vec<PolicyError>) {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let mut errors: Vec<PolicyError> = Vec::new();
    for _ in 0..MAX_SHAPE_ERRORS {
        let current = lines.join("\n");
        let error = match serde_saphyr::from_str::<RawZone>(&current) {
            Ok(raw) => return (Some(raw), errors),
            Err(error) => error,
        };
        let (line, column) = error.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = super::yaml_message(&error);
        let repeated = errors
            .iter()
            .any(|e| e.line == line && e.column == column && e.message == message);
        if !repeated {
            errors.push(PolicyError {
                path: path.to_path_buf(),
                line,
                column,
                message,
            });
        }
        // Only shape errors of a well-formed document are worth parsing again for: after a
        // YAML syntax error the rest of the file cannot be read reliably.
        let shape = is_shape_error(&error);
        if repeated || !shape || !leave_out(&mut lines, line, column) {
            break;
        }
    }
    (None, errors)
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
